// SGD with L2 weight decay: theory/weight_decay.md. The threshold is the
// shifted family of theory/region.md (detail::FamilyShift); the radius
// applies T(S) = E[A_B S A_B], A_B = (1 - lr lambda) I - lr H_B, directly.
#include "sgdstab/weight_decay.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "foundations/check.hpp"
#include "foundations/stopwatch.hpp"
#include "geometry/scaling.hpp"
#include "operators/cuda_backend.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/region.hpp"
#include "solvers/eigensolve.hpp"
#include "solvers/family.hpp"
#include "solvers/region_family.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

void check_weight_decay(double lambda, const char* where) {
  detail::require(std::isfinite(lambda) && lambda >= 0.0, where,
                  "weight decay must be finite and >= 0, got " + detail::fmt(lambda));
}

MatrixXd unit_psd_direction(MatrixXd s) {
  if (s.trace() < 0) s = -s;
  return s / s.norm();
}

// One solved member -> the threshold (the family's value is g'(s), 1/eta* = c g'(s)).
ThresholdResult from_member(const detail::FamilyMember& m, const detail::FamilyResult& fam, double c, Index batch,
                            Sampling sampling, const Geometry& g, double lambda, bool want_direction) {
  ThresholdResult res = detail::threshold_of_member(m, fam, c, batch, sampling, g, lambda, want_direction);
  if (res.pencil_max <= 0 && res.report.converged()) {
    res.report.status = Status::numerical_failure;
    res.report.message = "the pencil's largest eigenvalue is not positive";
  }
  return res;
}

// eta*(B, lambda) for every B, in the geometry's own units (theory/weight_decay.md, section 3).
std::vector<ThresholdResult> curve_of(const Geometry& g, const std::vector<Index>& batches, Sampling sampling,
                                      double lambda, const SolverOptions& opt) {
  std::vector<ThresholdResult> out(batches.size());
  // Points with the same c share one family: every point without or with
  // replacement (c = 1), one point at a time for Bernoulli (c depends on B).
  std::vector<bool> done(batches.size(), false);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (done[i]) continue;
    const double c = region_coordinates(sampling, g.samples(), static_cast<double>(batches[i])).first;
    std::vector<std::size_t> group;
    std::vector<double> svals;
    for (std::size_t j = i; j < batches.size(); ++j) {
      if (done[j]) continue;
      const auto [cj, sj] = region_coordinates(sampling, g.samples(), static_cast<double>(batches[j]));
      if (cj != c) continue;
      done[j] = true;
      group.push_back(j);
      if (sj > 0) svals.push_back(sj);
    }
    const detail::FamilyShift shift{lambda, c};
    const detail::FamilyResult fam =
        svals.empty() ? detail::FamilyResult{} : detail::geometry_family(g, svals, opt, opt.want_direction, shift);
    std::size_t next = 0;
    for (std::size_t j : group) {
      const double sj = region_coordinates(sampling, g.samples(), static_cast<double>(batches[j])).second;
      const detail::FamilyMember m = sj > 0 ? fam.members[next++] : detail::geometry_family_at_zero(g, shift);
      out[j] = from_member(m, fam, c, batches[j], sampling, g, lambda, opt.want_direction);
    }
  }
  return out;
}

}  // namespace

std::vector<ThresholdResult> weight_decay_threshold_curve(const Geometry& g, const std::vector<Index>& batches,
                                                          Sampling sampling, double lambda, const SolverOptions& opt) {
  const detail::Stopwatch watch;
  detail::require(!batches.empty(), "weight_decay_threshold_curve", "the list of batch sizes is empty");
  for (Index b : batches) check_batch(b, g.samples(), "weight_decay_threshold_curve");
  check_weight_decay(lambda, "weight_decay_threshold_curve");
  opt.validate();
  detail::require_device(opt);
  const detail::UnitGeometry u(g);
  // Rescaled units (theory/scaling.md): H' = H / unit, lr' = lr unit, so lambda' = lambda / unit.
  std::vector<ThresholdResult> out = curve_of(u.get(), batches, sampling, lambda / u.unit(), opt);
  for (ThresholdResult& r : out) {
    r.eta_star /= u.unit();
    r.pencil_max *= u.unit();
    r.report.seconds = watch.seconds();
  }
  return out;
}

ThresholdResult weight_decay_threshold(const Geometry& g, Index batch, Sampling sampling, double lambda,
                                       const SolverOptions& opt) {
  check_batch(batch, g.samples(), "weight_decay_threshold");
  check_weight_decay(lambda, "weight_decay_threshold");
  return weight_decay_threshold_curve(g, {batch}, sampling, lambda, opt).front();
}

StabilityRegion weight_decay_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                    const std::vector<Index>& batches, double lambda, const SolverOptions& opt) {
  check_weight_decay(lambda, "weight_decay_region");
  if (lambda > 0.0)
    for (Sampling s : schemes)
      detail::require(s != Sampling::bernoulli, "weight_decay_region",
                      "Bernoulli sampling with weight decay has no shared family (its c depends on B): use "
                      "weight_decay_threshold_curve for its points");
  return detail::shifted_region(g, schemes, batches, opt, lambda);
}

RadiusResult weight_decay_spectral_radius(const Geometry& g, double lr, Index batch, Sampling sampling, double lambda,
                                          const SolverOptions& opt) {
  const detail::Stopwatch watch;
  opt.validate();
  detail::require(std::isfinite(lr) && lr > 0, "weight_decay_spectral_radius",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  check_weight_decay(lambda, "weight_decay_spectral_radius");
  detail::require_device(opt);  // rho runs on the CPU (theory/gpu.md, section 3)
  // Rescaled units (theory/scaling.md): rho(lr, lambda; J) = rho(lr unit, lambda / unit; J / sqrt(unit)).
  const detail::UnitGeometry u(g);
  const Geometry& gu = u.get();
  const double lr_u = lr * u.unit(), lambda_u = lambda / u.unit();
  const SecondMomentOperator t(gu, batch, sampling);
  const Index r = gu.rank();
  const VectorXd& d = gu.hessian_eigenvalues();
  const double a = 1.0 - lr_u * lambda_u;
  MatrixXd s(r, r), q(r, r);
  // T(S) = a^2 S - a lr A(S) + lr^2 Q(S) (theory/weight_decay.md, eq. 1).
  detail::FunctionOperator op(packed_size(r), [&](const double* x, double* y) {
    s = unpack(Eigen::Map<const VectorXd>(x, packed_size(r)), r);
    t.quadratic_into(s, q);
    for (Index l = 0; l < r; ++l)
      for (Index k = 0; k < r; ++k) q(k, l) = a * a * s(k, l) - a * lr_u * (d(k) + d(l)) * s(k, l) + lr_u * lr_u * q(k, l);
    Eigen::Map<VectorXd>(y, packed_size(r)) = pack(q);
  });
  VectorXd start = pack(MatrixXd::Identity(r, r));
  start /= start.norm();
  detail::Eigenpair e = detail::top_eigenpair(op, start, opt, t.workspace_bytes() + 16.0 * r * r, "rho(T)");
  RadiusResult res;
  res.rho = e.value;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report = e.report;
  if (opt.want_direction && e.vector.size() > 0) res.direction = unit_psd_direction(unpack(e.vector, r));
  res.report.seconds = watch.seconds();
  return res;
}

}  // namespace sgdstab
