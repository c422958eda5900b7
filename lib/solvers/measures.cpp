// The Hessian's sharpness, non-uniformity, Frobenius norm and trace from the
// Gram alone (theory/bounds.md, section 7).
#include <algorithm>
#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"
#include "solvers/eigensolve.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::require;

namespace {

constexpr const char* kMeasures = "hessian_measures";

// The scaled Gram s K (s = 2^-e, exact) as an operator: y = s K x.
struct ScaledGram {
  const Eigen::Ref<const MatrixXd>& k;
  double scale;
  void apply(const double* x, double* y) const {
    detail::gemv(false, k.rows(), k.cols(), scale, k.data(), k.outerStride(), x, 0.0, y);
  }
};

// lambda_max((1/n) sum h_i^2 - H^2) of the scaled Gram from its
// eigendecomposition (section 7, eq. 4): F = U_+ sqrt(w_+) stands for J.
detail::Eigenpair nonuniformity_dense(const Eigen::Ref<const MatrixXd>& k, double scale, Index c) {
  const Index nc = k.rows(), n = nc / c;
  MatrixXd a = scale * k;
  VectorXd w;
  detail::symmetric_eigen_or_throw(a, w, std::string(kMeasures) + " (the dense non-uniformity)");
  const double top = std::max(w(nc - 1), 0.0);
  require(w(0) >= -1e-8 * top, kMeasures,
          "the Gram matrix is not positive semidefinite (smallest eigenvalue " + detail::fmt(w(0) / scale) +
              " against largest " + detail::fmt(top / scale) + ")");
  Index r = 0;  // eigenvalues above the rounding floor: range(K)
  while (r < nc && w(nc - 1 - r) > 64 * 2.2e-16 * nc * top) ++r;
  detail::Eigenpair out;
  out.report.status = Status::converged;
  out.report.method = Method::dense;
  out.report.iterations = 1;
  if (r == 0) return out;
  MatrixXd f(nc, r);  // columns: the top r eigenvectors times sqrt(w), largest first
  for (Index j = 0; j < r; ++j) f.col(j) = a.col(nc - 1 - j) * std::sqrt(w(nc - 1 - j));
  MatrixXd m = MatrixXd::Zero(r, r);
  const double inv_n = 1.0 / static_cast<double>(n);
  for (Index i = 0; i < n; ++i) {
    const MatrixXd fi = f.middleRows(i * c, c);
    const MatrixXd kii = scale * k.block(i * c, i * c, c, c);
    m.noalias() += inv_n * (fi.transpose() * (kii * fi));
  }
  for (Index j = 0; j < r; ++j) m(j, j) -= inv_n * inv_n * w(nc - 1 - j) * w(nc - 1 - j);
  m = 0.5 * (m + m.transpose()).eval();
  VectorXd ev;
  MatrixXd vec;
  detail::small_symmetric_eigen(m, ev, vec);
  out.value = ev(r - 1);
  out.report.residual = 0.0;
  out.report.error_bound = 0.0;
  out.report.message = "converged (dense: eigendecomposition of K, LAPACK dsyevd)";
  return out;
}

// The same by Lanczos on A = N K, self-adjoint in <x, y>_K = x^T K y, with
// N = (1/n) blockdiag(K_ii) - (1/n^2) K (section 7, eq. 3); full
// reorthogonalization, twice. The K-norm of a Ritz residual is the residual
// of the parameter-space eigenproblem.
detail::Eigenpair nonuniformity_lanczos(const ScaledGram& k, Index c, Index steps, double tolerance,
                                        double block_scale, double k_max) {
  const Index nc = k.k.rows(), n = nc / c;
  const double inv_n = 1.0 / static_cast<double>(n);
  MatrixXd q(nc, steps), kq(nc, steps);
  MatrixXd h = MatrixXd::Zero(steps + 1, steps);  // the projected matrix (upper Hessenberg, symmetric in exact arithmetic)
  detail::Eigenpair out;
  out.report.method = Method::lanczos;
  Rng rng(1);
  VectorXd v(nc), kv(nc);
  for (Index i = 0; i < nc; ++i) v(i) = rng.normal();
  k.apply(v.data(), kv.data());
  Index matvecs = 1;
  double norm2 = v.dot(kv);
  require(norm2 >= -1e-9 * k_max * v.squaredNorm(), kMeasures,
          "the Gram matrix is not positive semidefinite (x^T K x = " + detail::fmt(norm2 / k.scale) +
              " < 0 for a random x)");
  if (!(norm2 > 0)) {  // K v = 0 for a random v: K = 0 on every direction that matters
    out.report.status = Status::converged;
    out.report.matvecs = matvecs;
    out.report.message = "converged (K x = 0 for a random x: s = 0)";
    return out;
  }
  q.col(0) = v / std::sqrt(norm2);
  kq.col(0) = kv / std::sqrt(norm2);
  VectorXd u(nc), kkq(nc), ku(nc), coef;
  const double breakdown = 1e-13 * block_scale * block_scale;
  double theta = 0.0, residual = 0.0;
  Index taken = 0;
  for (Index j = 0; j < steps; ++j) {
    taken = j + 1;
    detail::throw_if_interrupted(kMeasures);
    k.apply(kq.col(j).data(), kkq.data());
    ++matvecs;
    for (Index i = 0; i < n; ++i)
      u.segment(i * c, c).noalias() = inv_n * (k.scale * k.k.block(i * c, i * c, c, c)) * kq.col(j).segment(i * c, c);
    u -= (inv_n * inv_n) * kkq;  // u = N K q_j
    coef = VectorXd::Zero(j + 1);
    for (int pass = 0; pass < 2; ++pass) {
      const VectorXd a = kq.leftCols(j + 1).transpose() * u;
      u.noalias() -= q.leftCols(j + 1) * a;
      coef += a;
    }
    h.col(j).head(j + 1) = coef;
    k.apply(u.data(), ku.data());
    ++matvecs;
    const double b2 = u.dot(ku);
    require(b2 >= -1e-9 * k_max * u.squaredNorm(), kMeasures,
            "the Gram matrix is not positive semidefinite (x^T K x = " + detail::fmt(b2 / k.scale) + " < 0 for |x|^2 = " +
                detail::fmt(u.squaredNorm()) + ")");
    const double beta = std::sqrt(std::max(b2, 0.0));
    h(j + 1, j) = beta;
    const Index m = j + 1;
    MatrixXd t = h.topLeftCorner(m, m);
    t = 0.5 * (t + t.transpose()).eval();
    VectorXd ev;
    MatrixXd vec;
    detail::small_symmetric_eigen(t, ev, vec);
    theta = ev(m - 1);
    residual = beta * std::abs(vec(m - 1, m - 1));
    const bool invariant = beta <= breakdown || m == nc;
    if (residual <= tolerance * std::abs(theta) || invariant) {
      out.report.status = Status::converged;
      out.report.message = invariant ? "converged (Lanczos in the K inner product reached an invariant subspace)"
                                     : "converged (Lanczos in the K inner product)";
      break;
    }
    if (j + 1 < steps) {
      q.col(j + 1) = u / beta;
      kq.col(j + 1) = ku / beta;
    }
  }
  out.value = theta;
  out.report.matvecs = matvecs;
  out.report.iterations = taken;
  out.report.residual = theta != 0 ? residual / std::abs(theta) : residual;
  out.report.error_bound = out.report.residual;
  if (!out.report.converged())
    out.report.message = "not converged: Lanczos in the K inner product stopped after " + std::to_string(steps) +
                         " steps with relative residual " + detail::fmt(out.report.residual) + " > " +
                         detail::fmt(tolerance);
  return out;
}

HessianMeasures measures_untimed(const Eigen::Ref<const MatrixXd>& k, Index c, const SolverOptions& options) {
  options.validate();
  require(k.rows() == k.cols() && k.rows() > 0, kMeasures,
          "the Gram matrix must be square and non-empty, got " + std::to_string(k.rows()) + " x " +
              std::to_string(k.cols()));
  require(c >= 1 && k.rows() % c == 0, kMeasures,
          "outputs = " + std::to_string(c) + " must be >= 1 and divide the Gram's size " + std::to_string(k.rows()));
  require(k.allFinite(), kMeasures, "the Gram matrix has NaN or Inf entries");
  const Index nc = k.rows(), n = nc / c;
  const double top = k.cwiseAbs().maxCoeff();
  double asym = 0.0;
  for (Index j = 0; j < nc; ++j)
    for (Index i = j + 1; i < nc; ++i) asym = std::max(asym, std::abs(k(i, j) - k(j, i)));
  require(asym <= 1e-10 * top, kMeasures,
          "the Gram matrix is not symmetric (max |K - K^T| = " + detail::fmt(asym) + " > 1e-10 max |K| = " +
              detail::fmt(1e-10 * top) + ")");
  HessianMeasures out;
  out.samples = n;
  out.outputs = c;
  if (top == 0) {
    out.report.status = Status::converged;
    out.report.method = Method::dense;
    out.report.message = "converged (K = 0)";
    return out;
  }
  const double scale = std::ldexp(1.0, -std::ilogb(top));  // s K has entries in [1, 2): nothing overflows
  const ScaledGram sk{k, scale};
  const double inv_n = 1.0 / static_cast<double>(n);
  out.hessian_trace = k.diagonal().sum() * inv_n;
  out.hessian_frobenius = (scale * k).norm() / scale * inv_n;
  // lambda_max(K) by the library's eigensolver path.
  const double vectors_bytes = 8.0 * static_cast<double>(nc);
  detail::FunctionOperator kop(nc, [&](const double* x, double* y) { sk.apply(x, y); });
  const detail::Eigenpair top_pair = detail::top_eigenpair(kop, VectorXd(), options, vectors_bytes, "lambda_max(K)");
  out.sharpness = top_pair.value / scale * inv_n;
  double block_scale = 0.0;  // max_i Tr(s K_ii) >= |s h_i|: s^2 <= its square
  for (Index i = 0; i < n; ++i) block_scale = std::max(block_scale, scale * k.block(i * c, i * c, c, c).trace());
  const Method method = options.method == Method::automatic
                            ? (nc <= options.dense_max_dimension ? Method::dense : Method::lanczos)
                            : options.method;
  detail::Eigenpair nu;
  std::string history;
  if (method == Method::dense) {
    check_memory(detail::dense_bytes(nc) + 8.0 * nc * static_cast<double>(nc), "the dense non-uniformity (K's eigendecomposition)",
                 options.memory_limit_bytes);
    nu = nonuniformity_dense(k, scale, c);
  } else {
    const Index steps = std::min<Index>(nc, options.subspace_dimension > 0 ? options.subspace_dimension : 300);
    check_memory(8.0 * static_cast<double>(nc) * (2.0 * steps + 6.0) + 8.0 * (steps + 1.0) * steps,
                 "the non-uniformity's Lanczos vectors (" + std::to_string(steps) + " of " + std::to_string(nc) +
                     " entries, twice)",
                 options.memory_limit_bytes);
    nu = nonuniformity_lanczos(sk, c, steps, options.tolerance, block_scale, std::max(top_pair.value, 0.0));
    if (!nu.report.converged() && nc <= options.dense_fallback_max_dimension &&
        detail::dense_fits(nc, options, 8.0 * nc * static_cast<double>(nc))) {
      history = nu.report.message + "; redone densely: ";
      const Index lanczos_matvecs = nu.report.matvecs;
      nu = nonuniformity_dense(k, scale, c);
      nu.report.matvecs += lanczos_matvecs;
    }
  }
  out.non_uniformity = std::sqrt(std::max(nu.value, 0.0)) / scale;
  out.report = nu.report;
  out.report.matvecs = nu.report.matvecs + top_pair.report.matvecs;
  out.report.message = "s^2: " + history + nu.report.message + "; lambda_max(K): " + top_pair.report.message;
  if (!top_pair.report.converged()) out.report.status = top_pair.report.status;
  return out;
}

}  // namespace

HessianMeasures hessian_measures(const Eigen::Ref<const MatrixXd>& gram, Index outputs, const SolverOptions& options) {
  return detail::timed([&] { return measures_untimed(gram, outputs, options); });
}

}  // namespace sgdstab
