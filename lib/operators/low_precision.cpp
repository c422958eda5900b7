// R in single precision: theory/region.md, section 7 (the arithmetic of
// theory/operator.md, section 4, in float).
#include "operators/low_precision.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

#include "foundations/parallel.hpp"
#include "operators/operator_kernels.hpp"

namespace sgdstab::detail {

namespace {

using Eigen::MatrixXf;

struct LowPrecisionPencil {
  explicit LowPrecisionPencil(const Geometry& g) : geometry(&g), c(g.outputs()), n(g.samples()), r(g.rank()) {}

  // Allocated at the first application, after the caller's memory checks.
  void prepare() {
    if (z.size() > 0 || r == 0) return;
    z = geometry->factor().cast<float>();
    weights.resize(r, r);
    const Eigen::VectorXd& d = geometry->hessian_eigenvalues();
    for (Index l = 0; l < r; ++l)
      for (Index k = l; k < r; ++k) weights(k, l) = static_cast<float>(1.0 / std::sqrt(d(k) + d(l)));
  }

  // Lower triangles, packed coordinates as in PencilOperator::perform_op.
  void apply(const float* x, float* y) {
    prepare();
    const float inv = static_cast<float>(1.0 / std::sqrt(2.0));
    s.resize(r, r);
    parallel_lower_columns(r, [&](Index l0, Index l1) {
      Index idx = packed_offset(l0, r);
      for (Index l = l0; l < l1; ++l) {
        float* col = s.col(l).data();
        const float* wl = weights.col(l).data();
        col[l] = x[idx++] * wl[l];
        for (Index k = l + 1; k < r; ++k) col[k] = x[idx++] * inv * wl[k];
      }
    });
    q.resize(r, r);  // lower triangle zeroed, one threaded pass; the upper one is never read
    parallel_lower_columns(r, [&](Index l0, Index l1) {
      for (Index l = l0; l < l1; ++l) std::fill(q.col(l).data() + l, q.col(l).data() + r, 0.0f);
    });
    sample_sum_lower(z, s, c, 1.0 / static_cast<double>(n), work, q);
    const float root2 = static_cast<float>(std::sqrt(2.0));
    parallel_lower_columns(r, [&](Index l0, Index l1) {
      Index idx = packed_offset(l0, r);
      for (Index l = l0; l < l1; ++l) {
        const float* col = q.col(l).data();
        const float* wl = weights.col(l).data();
        y[idx++] = col[l] * wl[l];
        for (Index k = l + 1; k < r; ++k) y[idx++] = root2 * col[k] * wl[k];
      }
    });
  }

  const Geometry* geometry;
  Index c, n, r;
  MatrixXf z, weights, s, q;
  SampleSumWork<float> work;
};

}  // namespace

LowApplyFn low_precision_pencil_r(const Geometry& g) {
  auto state = std::make_shared<LowPrecisionPencil>(g);
  return [state](const float* x, float* y) { state->apply(x, y); };
}

double low_precision_pencil_bytes(Index nc_rows, Index rank) {
  const double nc = static_cast<double>(nc_rows), r = static_cast<double>(rank);
  return 4.0 * (3.0 * nc * r + 3.0 * r * r);
}

}  // namespace sgdstab::detail
