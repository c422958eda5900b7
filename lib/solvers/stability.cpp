// Threshold eta*(B): theory/threshold.md. Spectral radius: theory/spectral_radius.md.
#include "sgdstab/stability.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "foundations/check.hpp"
#include "foundations/stopwatch.hpp"
#include "geometry/scaling.hpp"
#include "operators/cuda_backend.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/region.hpp"
#include "solvers/eigensolve.hpp"
#include "solvers/family.hpp"
#include "solvers/region_family.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

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

// The dense method: LAPACK on the explicit pencil (theory/threshold.md, section 5).
ThresholdResult dense_threshold(const Geometry& g, Index batch, Sampling sampling, const SolverOptions& opt) {
  SecondMomentOperator t(g, batch, sampling);
  PencilOperator op(t);
  const VectorXd start = identity_start((2.0 * g.hessian_eigenvalues()).cwiseSqrt());  // A^{1/2}(I)
  Eigenpair e = top_eigenpair(op, start, opt, t.workspace_bytes(), "eta*(B = " + std::to_string(batch) + ")");
  ThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.pencil_max = e.value;
  res.eta_star = e.value > 0 ? 1.0 / e.value : 0.0;
  res.report = e.report;
  if (res.report.converged()) res.report.error_bound = res.report.residual;
  if (opt.want_direction && e.vector.size() > 0) {
    MatrixXd s = unpack(e.vector, g.rank());
    s.array() *= op.weights().array();  // S* = A^{-1/2} y
    res.direction = unit_psd(s);
  }
  return res;
}

// The matrix-free method: the family g(s) of theory/region.md at one s.
ThresholdResult family_threshold(const Geometry& g, Index batch, Sampling sampling, const SolverOptions& opt) {
  const auto [c, s] = region_coordinates(sampling, g.samples(), static_cast<double>(batch));
  const detail::FamilyResult fam =
      s > 0 ? detail::geometry_family(g, {s}, opt, opt.want_direction) : detail::FamilyResult{};
  const detail::FamilyMember m = s > 0 ? fam.members.front() : detail::geometry_family_at_zero(g);
  return detail::threshold_of_member(m, fam, c, batch, sampling, g, 0.0, opt.want_direction);
}

ThresholdResult threshold_of(const Geometry& g, Index batch, Sampling sampling, const SolverOptions& opt) {
  opt.validate();
  check_batch(batch, g.samples(), "stability_threshold");
  detail::require_device(opt);
  ThresholdResult res = detail::resolve_method(opt, packed_size(g.rank())) == Method::dense
                            ? dense_threshold(g, batch, sampling, opt)
                            : family_threshold(g, batch, sampling, opt);
  if (res.pencil_max <= 0 && res.report.converged()) {
    res.report.status = Status::numerical_failure;
    res.report.message = "the pencil's largest eigenvalue is not positive";
  }
  return res;
}

}  // namespace

namespace {
// Results computed in rescaled units (lib/geometry/scaling.hpp), back in the user's.
ThresholdResult in_user_units(ThresholdResult r, double unit) {
  r.eta_star /= unit;
  r.pencil_max *= unit;
  return r;
}
}  // namespace

ThresholdResult stability_threshold(const Geometry& g, Index batch, Sampling sampling,
                                    const SolverOptions& opt) {
  const detail::Stopwatch watch;
  const detail::UnitGeometry u(g);
  ThresholdResult r = u.rescaled() ? in_user_units(threshold_of(u.get(), batch, sampling, opt), u.unit())
                                   : threshold_of(g, batch, sampling, opt);
  r.report.seconds = watch.seconds();
  return r;
}

namespace {
// No sampling noise (B = n without replacement, or Bernoulli at B = n): T(S) = (I - lr H) S (I - lr H), whose
// eigenvalues on range(H) are (1 - lr d_k)(1 - lr d_l), so rho = max_k (1 - lr d_k)^2 with eigenvector e_k e_k^T
// in the reduced (eigen)coordinates (theory/spectral_radius.md, section 1). Lanczos would see the cluster of
// eigenvalues 1 - 2 lr d_k near 1 that small d_k give and need thousands of applications for the same number.
RadiusResult full_batch_radius(const Geometry& g, double lr, Index batch, Sampling sampling, const SolverOptions& opt,
                               const detail::Stopwatch& watch) {
  const VectorXd& d = g.hessian_eigenvalues();
  Index top = 0;
  double best = -1.0;
  for (Index k = 0; k < d.size(); ++k) {
    const double a = (1.0 - lr * d(k)) * (1.0 - lr * d(k));
    if (a > best) {
      best = a;
      top = k;
    }
  }
  RadiusResult res;
  res.rho = best;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report.status = d.size() > 0 && std::isfinite(best) ? Status::converged : Status::numerical_failure;
  res.report.method = Method::dense;
  res.report.iterations = 1;
  res.report.residual = 0.0;
  res.report.message = "closed form: no sampling noise at B = n (gradient descent), rho = max_k (1 - lr d_k)^2";
  if (opt.want_direction && d.size() > 0) {
    res.direction = MatrixXd::Zero(d.size(), d.size());
    res.direction(top, top) = 1.0;
  }
  res.report.seconds = watch.seconds();
  return res;
}
}  // namespace

RadiusResult spectral_radius(const Geometry& g, double lr, Index batch, Sampling sampling,
                             const SolverOptions& opt) {
  const detail::Stopwatch watch;
  opt.validate();
  detail::require(std::isfinite(lr) && lr > 0, "spectral_radius", "learning rate must be finite and > 0, got " + detail::fmt(lr));
  detail::require_device(opt);  // rho runs on the CPU (theory/gpu.md, section 3), but cuda without a GPU is refused
  const detail::UnitGeometry u(g);
  if (u.rescaled()) {  // rho(eta; J) = rho(eta unit; J / sqrt(unit)) (theory/scaling.md)
    RadiusResult r = spectral_radius(u.get(), lr * u.unit(), batch, sampling, opt);
    r.lr = lr;
    r.report.seconds = watch.seconds();
    return r;
  }
  check_batch(batch, g.samples(), "spectral_radius");
  // No noise: beta = 0 and alpha = 1 (c = alpha + beta = 1), i.e. E[H_xi S H_xi] = H S H.
  if (const auto [c, s] = region_coordinates(sampling, g.samples(), static_cast<double>(batch)); c == 1.0 && s == 0.0)
    return full_batch_radius(g, lr, batch, sampling, opt, watch);
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
  res.report.seconds = watch.seconds();
  return res;
}

std::vector<ThresholdResult> threshold_curve(const Geometry& g, const std::vector<Index>& batches,
                                             Sampling sampling, const SolverOptions& opt) {
  const detail::Stopwatch watch;
  detail::require(!batches.empty(), "threshold_curve", "the list of batch sizes is empty");
  for (Index b : batches) check_batch(b, g.samples(), "threshold_curve");
  opt.validate();
  detail::require_device(opt);
  const detail::UnitGeometry u(g);
  if (u.rescaled()) {
    std::vector<ThresholdResult> out = threshold_curve(u.get(), batches, sampling, opt);
    for (ThresholdResult& r : out) r = in_user_units(std::move(r), u.unit());
    for (ThresholdResult& r : out) r.report.seconds = watch.seconds();
    return out;
  }
  std::vector<ThresholdResult> out;
  if (opt.want_direction || detail::resolve_method(opt, packed_size(g.rank())) == Method::dense) {
    for (Index b : batches) out.push_back(threshold_of(g, b, sampling, opt));
    for (ThresholdResult& r : out) r.report.seconds = watch.seconds();
    return out;
  }
  // One shared subspace for every B (theory/region.md, section 5).
  const StabilityRegion region = stability_region(g, {sampling}, batches, opt);
  for (const RegionPoint& p : region.curves.front().points) {
    ThresholdResult r;
    r.batch = p.batch;
    r.sampling = sampling;
    r.eta_star = p.eta_star;
    r.pencil_max = p.eta_star > 0 ? 1.0 / p.eta_star : 0.0;
    r.report = p.report;
    r.report.iterations = region.report.iterations + 1;
    r.report.error_bound = p.eta_low > 0 ? p.eta_high / p.eta_low - 1.0 : std::numeric_limits<double>::infinity();
    r.report.device = region.report.device;
    r.report.seconds = watch.seconds();
    out.push_back(r);
  }
  return out;
}

ThresholdResult detail::threshold_of_member(const FamilyMember& m, const FamilyResult& fam, double c, Index batch,
                                           Sampling sampling, const Geometry& g, double weight_decay,
                                           bool want_direction) {
  ThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.pencil_max = c * m.value;
  res.eta_star = m.value > 0 ? 1.0 / res.pencil_max : 0.0;
  res.report.status = m.status;
  res.report.method = m.method;
  res.report.matvecs = m.matvecs;
  res.report.single_precision_matvecs = fam.low_precision_matvecs;
  res.report.iterations = fam.restarts + 1;
  res.report.residual = m.value > 0 ? m.residual / m.value : m.residual;
  res.report.error_bound = m.value > 0 ? m.error / m.value : m.error;
  res.report.message = m.message;
  res.report.device = fam.device;
  if (want_direction && m.vector.size() > 0) {
    MatrixXd dir = unpack(m.vector, g.rank());
    const VectorXd& d = g.hessian_eigenvalues();
    for (Index l = 0; l < g.rank(); ++l)
      for (Index k = 0; k < g.rank(); ++k)
        dir(k, l) /= std::sqrt(d(k) + d(l) + 2.0 * weight_decay);  // S* = (A + 2 lambda)^{-1/2} y
    res.direction = unit_psd(dir);
  }
  return res;
}

std::vector<Index> default_batches(Index n) {
  detail::require(n >= 1, "default_batches", "samples must be >= 1, got " + std::to_string(n));
  std::vector<Index> out;
  for (Index b = 1; b < n; b *= 2) out.push_back(b);
  out.push_back(n);
  return out;
}

}  // namespace sgdstab
