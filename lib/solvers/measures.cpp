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
constexpr double kEpsilon = 2.220446049250313e-16;
// As Geometry::from_gram's default gram_tolerance: asymmetry and negative
// eigenvalues up to this fraction of the largest are rounding (a float32 Gram).
constexpr double kGramTolerance = 1e-6;

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
// k_top receives lambda_max(s K) from the same decomposition.
detail::Eigenpair nonuniformity_dense(const Eigen::Ref<const MatrixXd>& k, double scale, Index c, double& k_top) {
  const Index nc = k.rows(), n = nc / c;
  MatrixXd a = scale * k;
  VectorXd w;
  detail::symmetric_eigen_or_throw(a, w, std::string(kMeasures) + " (the dense non-uniformity)");
  const double top = std::max(w(nc - 1), 0.0);
  k_top = top;
  require(w(0) >= -kGramTolerance * top, kMeasures,
          "the Gram matrix is not positive semidefinite (smallest eigenvalue " + detail::fmt(w(0) / scale) +
              " < -1e-6 x largest " + detail::fmt(top / scale) + ")");
  Index r = 0;  // eigenvalues above the rounding floor: range(K)
  while (r < nc && w(nc - 1 - r) > 64 * kEpsilon * nc * top) ++r;
  detail::Eigenpair out;
  out.report.status = Status::converged;
  out.report.method = Method::dense;
  out.report.iterations = 1;
  if (r == 0) return out;
  // F: a's last r columns scaled in place by sqrt(w) (no second nc x r copy).
  for (Index j = nc - r; j < nc; ++j) a.col(j) *= std::sqrt(w(j));
  const auto f = a.rightCols(r);
  MatrixXd m = MatrixXd::Zero(r, r);
  const double inv_n = 1.0 / static_cast<double>(n);
  for (Index i = 0; i < n; ++i) {
    const MatrixXd fi = f.middleRows(i * c, c);
    const MatrixXd kii = scale * k.block(i * c, i * c, c, c);
    m.noalias() += inv_n * (fi.transpose() * (kii * fi));
  }
  for (Index j = 0; j < r; ++j) m(j, j) -= inv_n * inv_n * w(nc - r + j) * w(nc - r + j);
  m = 0.5 * (m + m.transpose()).eval();
  VectorXd ev;
  detail::symmetric_eigen_or_throw(m, ev, std::string(kMeasures) + " (the dense non-uniformity)");
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
  require(norm2 >= -kGramTolerance * k_max * v.squaredNorm(), kMeasures,
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
  bool lost = false;
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
    const double b2 = u.dot(ku), u2 = u.squaredNorm();
    require(b2 >= -kGramTolerance * k_max * u2, kMeasures,
            "the Gram matrix is not positive semidefinite (x^T K x = " + detail::fmt(b2 / k.scale) + " < 0 for |x|^2 = " +
                detail::fmt(u2) + ")");
    // u^T K u is resolved only above its rounding floor. Below it, u = 0 (an
    // invariant subspace) only when |u| itself is negligible; otherwise u
    // lies (numerically) in null(K): the vectors drifted there (a singular or
    // ill-conditioned K, section 7) and nothing after this step is trusted.
    const double floor = 64.0 * static_cast<double>(nc) * kEpsilon * k_max * u2;
    if (b2 <= floor && std::sqrt(k_max * u2) > breakdown) {
      lost = true;
      break;
    }
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
      // |q|^2 k_max >= 1 for a K-unit q; its excess measures the part in (near-)null(K),
      // which K-inner products resolve only to nc eps |q|^2 k_max.
      if (static_cast<double>(nc) * kEpsilon * k_max * q.col(j + 1).squaredNorm() > 1e-6) {
        lost = true;
        break;
      }
    }
  }
  out.value = theta;
  out.report.matvecs = matvecs;
  out.report.iterations = taken;
  out.report.residual = theta != 0 ? residual / std::abs(theta) : residual;
  out.report.error_bound = out.report.residual;
  if (lost)
    out.report.message = "not converged: the Lanczos vectors drifted into K's (near-)null space after " +
                         std::to_string(taken) + " steps (a singular or ill-conditioned Gram; section 7)";
  else if (!out.report.converged())
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
  double asym = 0.0;  // max |K_ij - K_ji|, in 64 x 64 tiles (both reads stay in cache)
  for (Index jb = 0; jb < nc; jb += 64)
    for (Index ib = jb; ib < nc; ib += 64)
      for (Index j = jb; j < std::min(jb + 64, nc); ++j)
        for (Index i = std::max(ib, j + 1); i < std::min(ib + 64, nc); ++i)
          asym = std::max(asym, std::abs(k(i, j) - k(j, i)));
  require(asym <= kGramTolerance * top, kMeasures,
          "the Gram matrix is not symmetric (max |K - K^T| = " + detail::fmt(asym) + " > 1e-6 max |K| = " +
              detail::fmt(kGramTolerance * top) + ")");
  HessianMeasures out;
  out.samples = n;
  out.outputs = c;
  if (top == 0) {
    out.report.status = Status::converged;
    out.report.method = Method::dense;
    out.report.message = "converged (K = 0)";
    return out;
  }
  // s K has entries in [1, 2) (up to 2^-1000 for a subnormal K): nothing overflows; results are
  // divided by n before s, so none overflows where the true value does not.
  const double scale = std::ldexp(1.0, std::min(-std::ilogb(top), 1000));
  const ScaledGram sk{k, scale};
  const double inv_n = 1.0 / static_cast<double>(n);
  out.hessian_trace = scale * k.diagonal().sum() * inv_n / scale;
  out.hessian_frobenius = (scale * k).norm() * inv_n / scale;
  double block_scale = 0.0, diagonal_max = 0.0;  // max_i Tr(s K_ii) >= |s h_i|: s^2 <= its square
  for (Index i = 0; i < n; ++i) block_scale = std::max(block_scale, scale * k.block(i * c, i * c, c, c).trace());
  for (Index i = 0; i < nc; ++i) diagonal_max = std::max(diagonal_max, scale * k(i, i));
  const Method method = options.method == Method::automatic
                            ? (nc <= options.dense_max_dimension ? Method::dense : Method::lanczos)
                            : options.method;
  detail::Eigenpair nu;
  std::string history;
  const double dense_need = 2.0 * detail::dense_bytes(nc);  // K's decomposition, then the r x r one beside it
  if (method == Method::dense) {
    check_memory(dense_need, "the dense measures (K's eigendecomposition)", options.memory_limit_bytes);
    double k_top = 0.0;
    nu = nonuniformity_dense(k, scale, c, k_top);
    out.sharpness = k_top * inv_n / scale;
    out.report = nu.report;
  } else {
    // lambda_max(K) by the library's eigensolver path.
    detail::FunctionOperator kop(nc, [&](const double* x, double* y) { sk.apply(x, y); });
    const detail::Eigenpair top_pair =
        detail::top_eigenpair(kop, VectorXd(), options, 8.0 * static_cast<double>(nc), "lambda_max(K)");
    out.sharpness = top_pair.value * inv_n / scale;
    const Index steps = std::min<Index>(nc, options.subspace_dimension > 0 ? options.subspace_dimension : 300);
    check_memory(8.0 * static_cast<double>(nc) * (2.0 * steps + 6.0) + 8.0 * (steps + 1.0) * steps,
                 "the non-uniformity's Lanczos vectors (" + std::to_string(steps) + " of " + std::to_string(nc) +
                     " entries, twice)",
                 options.memory_limit_bytes);
    nu = nonuniformity_lanczos(sk, c, steps, options.tolerance, block_scale, std::max(top_pair.value, diagonal_max));
    if (!nu.report.converged() && nc <= options.dense_fallback_max_dimension &&
        detail::dense_fits(nc, options, detail::dense_bytes(nc))) {
      history = nu.report.message + "; redone densely: ";
      const Index lanczos_matvecs = nu.report.matvecs, lanczos_steps = nu.report.iterations;
      double k_top = 0.0;
      nu = nonuniformity_dense(k, scale, c, k_top);
      nu.report.matvecs += lanczos_matvecs;
      nu.report.iterations += lanczos_steps;
    }
    out.report = nu.report;
    out.report.matvecs = nu.report.matvecs + top_pair.report.matvecs;
    out.report.message = "s^2: " + history + nu.report.message + "; lambda_max(K): " + top_pair.report.message;
    if (!top_pair.report.converged() && nu.report.converged()) out.report.status = top_pair.report.status;
  }
  out.non_uniformity = std::sqrt(std::max(nu.value, 0.0)) / scale;
  return out;
}

}  // namespace

HessianMeasures hessian_measures(const Eigen::Ref<const MatrixXd>& gram, Index outputs, const SolverOptions& options) {
  return detail::timed([&] { return measures_untimed(gram, outputs, options); });
}

}  // namespace sgdstab
