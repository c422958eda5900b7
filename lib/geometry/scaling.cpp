// theory/scaling.md.
#include "geometry/scaling.hpp"

#include <cmath>

namespace sgdstab::detail {

double unit_of(double lambda_max) {
  const int e = std::ilogb(lambda_max);  // lambda_max in [2^e, 2^(e+1))
  const int k = (e >= 0 ? e : e - 1) / 2;  // floor(e / 2)
  return std::ldexp(1.0, 2 * k);
}

bool safe_units(double lambda_max) { return lambda_max >= std::ldexp(1.0, -40) && lambda_max <= std::ldexp(1.0, 40); }

UnitGeometry::UnitGeometry(const Geometry& g) : g_(&g) {
  if (safe_units(g.lambda_max())) return;
  unit_ = unit_of(g.lambda_max());
  const double root = std::sqrt(unit_);  // 2^k: exact
  scaled_ = Geometry::from_factor(g.factor() / root, g.hessian_eigenvalues() / unit_, g.outputs(), g.params());
}

}  // namespace sgdstab::detail
