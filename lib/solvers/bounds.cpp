// Alignment of SGD noise and the bounds table (theory/bounds.md).
#include "sgdstab/bounds.hpp"

#include <algorithm>
#include <cmath>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "geometry/scaling.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"
#include "solvers/eigensolve.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::require;

namespace {

// 2^-e with x in [2^e, 2^(e+1)): multiplying by it is exact and brings x to [1, 2).
double power_of_two_near_inverse(double x) { return x > 0 && std::isfinite(x) ? std::ldexp(1.0, -std::ilogb(x)) : 1.0; }

}  // namespace

namespace {

void check_residuals(Index rows, Index outputs, const Eigen::Ref<const VectorXd>& r, const char* where) {
  require(outputs >= 1 && rows % outputs == 0, where,
          "the row count " + std::to_string(rows) + " must be a multiple of outputs = " + std::to_string(outputs));
  require(r.size() == rows, where,
          "residuals must have n c = " + std::to_string(rows) + " entries, got " + std::to_string(r.size()));
  require(r.allFinite(), where, "residuals have NaN or Inf entries");
  require(r.squaredNorm() > 0.0, where, "residuals are all zero: the alignment is 0/0 at an interpolating point");
}

// The eigensolver settings of the bounds (theory/bounds.md, section 6): LAPACK
// below r = 400, Lanczos (ncv 24) to relative accuracy 1e-12 above, with the
// fallbacks of detail::top_eigenpair.
SolverOptions bounds_solver_options() {
  SolverOptions o;
  o.tolerance = 1e-12;
  o.subspace_dimension = 24;
  o.dense_max_dimension = 399;
  return o;
}

// Records a failed eigensolve of the bounds table in b (the first failure wins).
void note_failure(StabilityBounds& b, const SolveReport& report, const std::string& what) {
  if (report.converged() || !b.converged()) return;
  b.report.status = report.status;
  b.report.message = what + ": " + report.message;
}

// lambda_max of a symmetric matrix held densely.
double largest_eigenvalue(const MatrixXd& m, StabilityBounds& b, const std::string& what) {
  const detail::Eigenpair e = detail::largest_eigenpair(m, bounds_solver_options(), what);
  note_failure(b, e.report, what);
  return e.value;
}

}  // namespace

// theory/bounds.md, eq. 2: everything through K = J J^T.
double alignment(const Eigen::Ref<const MatrixXd>& gram, Index outputs, const Eigen::Ref<const VectorXd>& residuals) {
  require(gram.rows() == gram.cols() && gram.rows() > 0, "alignment", "the Gram must be square and non-empty");
  require(gram.allFinite(), "alignment", "the Gram has NaN or Inf entries");
  check_residuals(gram.rows(), outputs, residuals, "alignment");
  const Index nc = gram.rows(), c = outputs, n = nc / c;
  check_memory(8.0 * 2.0 * static_cast<double>(nc) * static_cast<double>(nc), "K^2 for the alignment");
  // mu does not depend on the scale of K or of r: both are brought near 1 by
  // exact powers of two, so K^2 r r neither overflows nor underflows (theory/scaling.md).
  const MatrixXd k = gram * power_of_two_near_inverse(gram.cwiseAbs().maxCoeff());
  const VectorXd res = residuals * power_of_two_near_inverse(residuals.cwiseAbs().maxCoeff());
  MatrixXd k2;
  detail::gemm(false, false, 1.0, k, k, 0.0, k2);
  const double dn = static_cast<double>(n);
  double per_sample = 0.0;  // sum_i r_i^T (K^2)_ii r_i
  for (Index i = 0; i < n; ++i) {
    const auto ri = res.segment(i * c, c);
    per_sample += ri.dot(k2.block(i * c, i * c, c, c) * ri);
  }
  const double mean_part = res.dot(k2 * res);
  const double trace_sigma_g = per_sample / (dn * dn) - mean_part / (dn * dn * dn);
  const double g_frob2 = k.squaredNorm() / (dn * dn);
  const double two_loss = res.squaredNorm() / dn;
  require(g_frob2 > 0.0, "alignment", "the Gram is zero (G = 0)");
  return trace_sigma_g / (two_loss * g_frob2);
}

// theory/bounds.md, eq. 1, in parameter space.
double alignment_from_jacobian(const Eigen::Ref<const MatrixXd>& jacobian, Index outputs,
                               const Eigen::Ref<const VectorXd>& residuals) {
  require(jacobian.rows() > 0 && jacobian.cols() > 0 && jacobian.allFinite(), "alignment_from_jacobian",
          "the Jacobian must be non-empty and finite");
  check_residuals(jacobian.rows(), outputs, residuals, "alignment_from_jacobian");
  const Index c = outputs, n = jacobian.rows() / c, p = jacobian.cols();
  check_memory(8.0 * 3.0 * static_cast<double>(p) * static_cast<double>(p) +
                   8.0 * static_cast<double>(jacobian.rows()) * static_cast<double>(p),
               "Sigma_1 and G (p x p)");
  const double dn = static_cast<double>(n);
  // Scale-free (theory/scaling.md): J and r brought near 1 by powers of two.
  const MatrixXd jac = jacobian * power_of_two_near_inverse(jacobian.cwiseAbs().maxCoeff());
  const VectorXd res = residuals * power_of_two_near_inverse(residuals.cwiseAbs().maxCoeff());
  MatrixXd sigma = MatrixXd::Zero(p, p);
  VectorXd mean = VectorXd::Zero(p);
  for (Index i = 0; i < n; ++i) {
    const VectorXd gi = jac.middleRows(i * c, c).transpose() * res.segment(i * c, c);
    sigma += gi * gi.transpose();
    mean += gi;
  }
  sigma /= dn;
  mean /= dn;
  sigma -= mean * mean.transpose();
  const MatrixXd gmat = jac.transpose() * jac / dn;
  const double two_loss = res.squaredNorm() / dn;
  require(gmat.squaredNorm() > 0.0, "alignment_from_jacobian", "the Jacobian is zero (G = 0)");
  return (sigma.cwiseProduct(gmat)).sum() / (two_loss * gmat.squaredNorm());
}

// theory/bounds.md, eqs. 3-4: mu_lin(u) is a Rayleigh quotient over u = J delta in range(K).
namespace {

WorstAlignment worst_alignment_untimed(const Geometry& g) {
  const detail::UnitGeometry units(g);  // mu_* is scale-free: computed where H is near 1
  if (units.rescaled()) return worst_case_alignment(units.get());
  const Index r = g.rank(), c = g.outputs(), n = g.samples();
  const MatrixXd& z = g.factor();
  const VectorXd& d = g.hessian_eigenvalues();
  const double dn = static_cast<double>(n);
  const VectorXd inv_sqrt_lambda = (dn * d).cwiseSqrt().cwiseInverse();
  const MatrixXd u = z * inv_sqrt_lambda.asDiagonal();  // orthonormal basis of range(K)
  MatrixXd v(u.rows(), r);                              // rows i: (Z_i D Z_i^T) U_i
  for (Index i = 0; i < n; ++i) {
    const MatrixXd zi = z.middleRows(i * c, c);
    v.middleRows(i * c, c) = (zi * d.asDiagonal() * zi.transpose()) * u.middleRows(i * c, c);
  }
  MatrixXd b = u.transpose() * v / dn;
  b.diagonal() -= d.cwiseAbs2() / dn;
  b = 0.5 * (b + b.transpose());
  VectorXd ev;
  MatrixXd vec = b;
  WorstAlignment out;
  try {
    detail::symmetric_eigen_or_throw(vec, ev, "worst_case_alignment");
  } catch (const numerical_error& e) {
    out.report.status = e.status();
    out.report.message = e.what();
    return out;
  }
  out.report.status = Status::converged;
  out.report.message = "converged (dense eigendecomposition, LAPACK dsyevd)";
  out.mu_star = std::max(0.0, dn * ev(0) / d.squaredNorm());  // Tr(Sigma_1 G) >= 0: clip round-off
  out.residual_direction = u * vec.col(0);
  return out;
}

}  // namespace

WorstAlignment worst_case_alignment(const Geometry& g) {
  return detail::timed([&] { return worst_alignment_untimed(g); });
}

namespace {

// Non-uniformity s = sqrt(lambda_max((1/n) sum_i h_i^2 - H^2)) with h_i = Z_i^T Z_i
// (theory/bounds.md, section 6), applied without forming it above rank 400:
// (1/n) Z^T blockdiag(Z_i Z_i^T) Z x - D^2 x. A failed eigensolve is noted in b.
double non_uniformity(const Geometry& g, StabilityBounds& b) {
  const Index r = g.rank(), c = g.outputs(), n = g.samples();
  const VectorXd& d = g.hessian_eigenvalues();
  const MatrixXd& z = g.factor();
  MatrixXd zzt(c, n * c);  // the c x c blocks Z_i Z_i^T side by side
  for (Index i = 0; i < n; ++i) zzt.middleCols(i * c, c).noalias() = z.middleRows(i * c, c) * z.middleRows(i * c, c).transpose();
  const VectorXd d2 = d.cwiseAbs2();
  const double inv_n = 1.0 / static_cast<double>(n);
  auto apply_nu = [&](const double* x, double* y) {
    VectorXd u = z * VectorXd::Map(x, r);  // (n c)
    for (Index i = 0; i < n; ++i) u.segment(i * c, c) = zzt.middleCols(i * c, c) * u.segment(i * c, c).eval();
    VectorXd::Map(y, r).noalias() = inv_n * (z.transpose() * u) - d2.cwiseProduct(VectorXd::Map(x, r));
  };
  double nu_max = 0.0;
  const SolverOptions nu_options = bounds_solver_options();
  if (detail::resolve_method(nu_options, r) == Method::dense) {
    MatrixXd h2 = MatrixXd::Zero(r, r);
    for (Index i = 0; i < n; ++i) {
      const MatrixXd zi = z.middleRows(i * c, c);
      h2 += zi.transpose() * zzt.middleCols(i * c, c) * zi;
    }
    h2 *= inv_n;
    h2.diagonal() -= d2;
    nu_max = largest_eigenvalue(MatrixXd(0.5 * (h2 + h2.transpose())), b, "non_uniformity");
  } else {
    detail::FunctionOperator nu(r, apply_nu);
    const detail::Eigenpair e = detail::top_eigenpair(nu, VectorXd(), nu_options, 0.0, "non_uniformity");
    note_failure(b, e.report, "non_uniformity");
    nu_max = e.value;
  }
  return std::sqrt(std::max(0.0, nu_max));
}

}  // namespace

namespace {

// The table computed where H is near 1, reported in the user's units (theory/scaling.md).
StabilityBounds bounds_rescaled(const detail::UnitGeometry& u, Index batch, Sampling sampling,
                                const SolverOptions& options, const ThresholdResult* threshold,
                                std::optional<double> mu_star) {
  const double unit = u.unit();
  std::optional<ThresholdResult> thr;
  if (threshold != nullptr) {
    thr = *threshold;
    thr->eta_star *= unit;
    thr->pencil_max /= unit;
  }
  StabilityBounds b = stability_bounds(u.get(), batch, sampling, options, thr ? &*thr : nullptr, mu_star);
  for (double* eta : {&b.eta_star, &b.eta_gd, &b.eta_sufficient, &b.eta_necessary_rank1, &b.eta_necessary_trace})
    *eta /= unit;
  if (b.eta_alignment) *b.eta_alignment /= unit;
  if (b.eta_trace_b1) *b.eta_trace_b1 /= unit;
  b.sharpness *= unit;
  b.non_uniformity *= unit;
  b.hessian_frobenius *= unit;
  b.hessian_trace *= unit;
  return b;
}

StabilityBounds bounds_untimed(const Geometry& g, Index batch, Sampling sampling, const SolverOptions& options,
                               const ThresholdResult* threshold, std::optional<double> mu_star) {
  const SamplingFactors f = sampling_factors(sampling, g.samples(), batch);  // validates batch
  const detail::UnitGeometry u(g);
  if (u.rescaled()) return bounds_rescaled(u, batch, sampling, options, threshold, mu_star);
  StabilityBounds b;
  b.batch = batch;
  b.sampling = sampling;
  b.gamma = f.beta;
  if (threshold != nullptr) {
    require(threshold->batch == batch && threshold->sampling == sampling, "stability_bounds",
            "the given threshold is for another batch size or scheme");
    b.eta_star = threshold->eta_star;
    b.report.status = threshold->status();
    b.report.message = threshold->report.message;
  } else {
    const ThresholdResult thr = stability_threshold(g, batch, sampling, options);
    b.eta_star = thr.eta_star;
    b.report.status = thr.status();
    b.report.message = thr.report.message;
  }
  if (!b.converged()) b.report.message = "eta*: " + b.report.message;
  const Index r = g.rank(), c = g.outputs();
  const VectorXd& d = g.hessian_eigenvalues();
  b.sharpness = d(0);
  b.hessian_frobenius = d.norm();
  b.hessian_trace = d.sum();
  b.eta_gd = 2.0 / d(0);
  const SecondMomentOperator op(g, batch, sampling);
  // E[H_xi^2] = Q(I) (theory/bounds.md, eq. 5).
  const MatrixXd qi = op.quadratic(MatrixXd::Identity(r, r));
  const VectorXd inv_sqrt_d = d.cwiseSqrt().cwiseInverse();
  MatrixXd scaled = inv_sqrt_d.asDiagonal() * qi * inv_sqrt_d.asDiagonal();
  scaled = 0.5 * (scaled + scaled.transpose());
  b.eta_sufficient = 2.0 / largest_eigenvalue(scaled, b, "eta_sufficient");
  MatrixXd e1 = MatrixXd::Zero(r, r);
  e1(0, 0) = 1.0;  // v v^T, v the top eigenvector of H (coordinates sorted descending)
  b.eta_necessary_rank1 = 2.0 * d(0) / op.quadratic(e1)(0, 0);
  b.eta_necessary_trace = 2.0 * d.sum() / qi.trace();
  b.non_uniformity = non_uniformity(g, b);
  if (mu_star) {
    b.mu_star = *mu_star;
  } else {
    const WorstAlignment w = worst_case_alignment(g);
    b.mu_star = w.mu_star;
    if (!w.converged() && b.converged()) {
      b.report.status = w.report.status;
      b.report.message = "mu_star: " + w.report.message;
    }
  }
  if (b.gamma * b.mu_star > 0.0) b.eta_alignment = 1.0 / (b.hessian_frobenius * std::sqrt(b.gamma * b.mu_star));
  if (batch == 1 && c == 1) b.eta_trace_b1 = 2.0 / b.hessian_trace;
  return b;
}

}  // namespace

StabilityBounds stability_bounds(const Geometry& g, Index batch, Sampling sampling, const SolverOptions& options,
                                 const ThresholdResult* threshold, std::optional<double> mu_star) {
  return detail::timed([&] { return bounds_untimed(g, batch, sampling, options, threshold, mu_star); });
}

}  // namespace sgdstab
