#pragma once
// Units (theory/scaling.md): the answers must not depend on the units of
// the user's network. Scaling J by s scales H, every h_i, K by s^2, and
//   eta*(sJ) = eta*(J) / s^2,   rho(eta; sJ) = rho(eta s^2; J),
// while alignments, relative residuals and eigen-directions do not change.
// The public routines therefore compute on a copy of the geometry scaled by
// an exact power of two so that lambda_max(H) lies in [1, 4), and convert
// at the edges. Inside the window below nothing is copied or scaled, so
// ordinary problems are computed exactly as before.
#include <optional>

#include "sgdstab/geometry.hpp"

namespace sgdstab::detail {

/// 2^k with lambda_max / 4^k in [1, 4): the power of two to divide H by.
/// (Scaling by it is exact: no digit of any entry changes.)
double unit_of(double lambda_max);

/// Whether a problem of this sharpness is computed in its own units:
/// products of four Hessian entries stay far from overflow and underflow.
bool safe_units(double lambda_max);

/// The geometry to compute on: `g` itself when its units are safe, else a
/// copy with H divided by `unit()` (an exact power of 4).
/// User-unit conversions: lambda_user = lambda * unit, eta_user = eta / unit.
class UnitGeometry {
 public:
  explicit UnitGeometry(const Geometry& g);
  const Geometry& get() const { return scaled_ ? *scaled_ : *g_; }
  bool rescaled() const { return scaled_.has_value(); }
  double unit() const { return unit_; }

 private:
  const Geometry* g_;
  std::optional<Geometry> scaled_;
  double unit_ = 1.0;
};

}  // namespace sgdstab::detail
