// Threshold eta*(B): theory/threshold.md. Spectral radius: theory/spectral_radius.md.
#include "sgdstab/stability.hpp"

#include <algorithm>
#include <cmath>

#include "check.hpp"
#include "eigensolve.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

void SolverOptions::validate() const {
  const std::string where = "SolverOptions";
  detail::require(std::isfinite(tolerance) && tolerance > 0 && tolerance < 0.1, where,
                  "tolerance must satisfy 0 < tolerance < 0.1, got " + detail::fmt(tolerance));
  detail::require(max_iterations >= 1, where,
                  "max_iterations must be >= 1, got " + std::to_string(max_iterations));
  detail::require(subspace_dimension == 0 || subspace_dimension >= 3, where,
                  "subspace_dimension must be 0 (automatic) or >= 3, got " +
                      std::to_string(subspace_dimension));
  detail::require(dense_max_dimension >= 0 && dense_fallback_max_dimension >= 0, where,
                  "dense dimensions must be >= 0");
  detail::require(std::isfinite(memory_limit_bytes) && memory_limit_bytes >= 0, where,
                  "memory_limit_bytes must be >= 0, got " + detail::fmt(memory_limit_bytes));
}

namespace {

using detail::Eigenpair;
using detail::top_eigenpair;

// A PSD start with positive overlap with the (PSD) top eigenvector:
// theory/threshold.md, section 6.
VectorXd identity_start(const VectorXd& diag_weights) {
  const VectorXd x = pack(MatrixXd(diag_weights.asDiagonal()));
  return x / x.norm();
}

MatrixXd unit_psd(MatrixXd s) {
  if (s.trace() < 0) s = -s;
  return s / s.norm();
}

ThresholdResult threshold_with_start(const Geometry& g, Index batch, Sampling sampling,
                                     const SolverOptions& opt, const VectorXd* warm, VectorXd* vec_out) {
  opt.validate();
  SecondMomentOperator t(g, batch, sampling);
  PencilOperator op(t);
  const VectorXd& d = g.hessian_eigenvalues();
  VectorXd start = identity_start((2.0 * d).cwiseSqrt());  // A^{1/2}(I)
  if (warm != nullptr && warm->size() == start.size()) {
    start = *warm / warm->norm() + 0.1 * start;
    start /= start.norm();
  }
  Eigenpair e = top_eigenpair(op, start, opt, t.workspace_bytes(), "eta*(B = " + std::to_string(batch) + ")");
  ThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.pencil_max = e.value;
  res.eta_star = e.value > 0 ? 1.0 / e.value : 0.0;
  res.report = e.report;
  if (e.value <= 0 && res.report.converged()) {
    res.report.status = Status::numerical_failure;
    res.report.message = "the pencil's largest eigenvalue is not positive";
  }
  if (opt.want_direction && e.vector.size() > 0) {
    MatrixXd s = unpack(e.vector, g.rank());
    s.array() *= op.weights().array();  // S* = A^{-1/2} y
    res.direction = unit_psd(s);
  }
  if (vec_out != nullptr) *vec_out = e.vector;
  return res;
}

}  // namespace

ThresholdResult stability_threshold(const Geometry& g, Index batch, Sampling sampling,
                                    const SolverOptions& opt) {
  return threshold_with_start(g, batch, sampling, opt, nullptr, nullptr);
}

RadiusResult spectral_radius(const Geometry& g, double lr, Index batch, Sampling sampling,
                             const SolverOptions& opt) {
  opt.validate();
  SecondMomentOperator t(g, batch, sampling);
  TransitionOperator op(t, lr);
  const VectorXd start = identity_start(VectorXd::Ones(g.rank()));
  Eigenpair e = top_eigenpair(op, start, opt, t.workspace_bytes(), "rho(T)");
  RadiusResult res;
  res.rho = e.value;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report = e.report;
  if (opt.want_direction && e.vector.size() > 0) res.direction = unit_psd(unpack(e.vector, g.rank()));
  return res;
}

std::vector<ThresholdResult> threshold_curve(const Geometry& g, const std::vector<Index>& batches,
                                             Sampling sampling, const SolverOptions& opt) {
  detail::require(!batches.empty(), "threshold_curve", "the list of batch sizes is empty");
  for (Index b : batches) check_batch(b, g.samples(), "threshold_curve");
  std::vector<ThresholdResult> out;
  VectorXd previous;
  for (Index b : batches) {
    VectorXd vec;
    out.push_back(threshold_with_start(g, b, sampling, opt, previous.size() ? &previous : nullptr, &vec));
    if (out.back().converged()) previous = vec;
  }
  return out;
}

std::vector<Index> default_batches(Index n) {
  detail::require(n >= 1, "default_batches", "samples must be >= 1, got " + std::to_string(n));
  std::vector<Index> out;
  for (Index b = 1; b < n; b *= 2) out.push_back(b);
  out.push_back(n);
  return out;
}

}  // namespace sgdstab
