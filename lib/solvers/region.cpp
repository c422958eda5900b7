// The stability region: theory/region.md.
#include "sgdstab/region.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "foundations/check.hpp"
#include "geometry/scaling.hpp"
#include "operators/cuda_backend.hpp"
#include "operators/low_precision.hpp"
#include "sgdstab/device.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/weight_decay.hpp"
#include "solvers/family.hpp"
#include "solvers/momentum_levels.hpp"
#include "solvers/region_family.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

std::pair<double, double> region_coordinates(Sampling sampling, Index samples, double batch) {
  const double nd = static_cast<double>(samples), Bd = batch;
  detail::require(samples >= 1 && std::isfinite(batch) && batch >= 1.0 && batch <= nd, "region_coordinates",
                  "batch size B must satisfy 1 <= B <= n = " + std::to_string(samples) + ", got B = " +
                      detail::fmt(batch));
  double alpha = 1.0, beta = 0.0;
  switch (sampling) {  // sampling.hpp's table at real B (theory/region.md, section 2)
    case Sampling::without_replacement:
      if (Bd == nd) break;
      alpha = nd * (Bd - 1.0) / (Bd * (nd - 1.0));
      beta = (nd - Bd) / (Bd * (nd - 1.0));
      break;
    case Sampling::with_replacement:
      alpha = (Bd - 1.0) / Bd;
      beta = 1.0 / Bd;
      break;
    case Sampling::bernoulli:
      beta = (nd - Bd) / (nd * Bd);
      break;
  }
  const double c = alpha + beta;
  return {c, beta / c};
}

EtaInterval StabilityRegion::g_bounds(double s) const {
  detail::require(momentum.beta == 0.0 && !adam, "StabilityRegion::g_bounds",
                  "a momentum or adaptive region has no pencil g(s) (theory/momentum.md, section 7); use band()");
  detail::require(s >= 0.0 && s <= 1.0, "StabilityRegion::g_bounds", "s must lie in [0, 1], got " + detail::fmt(s));
  EtaInterval out{0.0, std::numeric_limits<double>::infinity()};
  for (const RegionTangent& t : tangents) out.low = std::max(out.low, (1.0 - s) * t.p + s * t.r);
  for (std::size_t j = 0; j < knots.size(); ++j) {
    if (knots[j].s == s) out.high = std::min(out.high, knots[j].upper);
    if (j + 1 < knots.size() && knots[j].s < s && s < knots[j + 1].s) {
      const double w = (s - knots[j].s) / (knots[j + 1].s - knots[j].s);
      out.high = std::min(out.high, (1.0 - w) * knots[j].upper + w * knots[j + 1].upper);
    }
  }
  out.high = std::max(out.high, out.low);
  return out;
}

EtaInterval StabilityRegion::band(Sampling sampling, double batch) const {
  if (momentum.beta > 0.0 || adam) {
    // theory/momentum.md, section 7: eta*(B) is non-decreasing in B for each
    // scheme (kappa = b(B) kappa_0, b decreasing), so the nearest computed
    // points on either side bound it; eta_mean bounds it from above. The
    // same holds for RMSProp's L2 decay (adam with beta1 = 0, adam_l2_region).
    detail::require(batch >= 1.0 && batch <= static_cast<double>(samples), "StabilityRegion::band",
                    "batch must satisfy 1 <= B <= n = " + std::to_string(samples) + ", got " + detail::fmt(batch));
    const auto curve = std::find_if(curves.begin(), curves.end(), [&](const RegionCurve& c) { return c.sampling == sampling; });
    detail::require(curve != curves.end(), "StabilityRegion::band", "no curve for scheme '" + to_string(sampling) + "'");
    EtaInterval out{0.0, eta_mean};
    for (const RegionPoint& p : curve->points) {
      if (!p.converged()) continue;
      if (static_cast<double>(p.batch) <= batch) out.low = std::max(out.low, p.eta_low);
      if (static_cast<double>(p.batch) >= batch) out.high = std::min(out.high, p.eta_high);
    }
    return out;
  }
  // With weight decay the family is that of c = 1 (theory/weight_decay.md,
  // section 3): Bernoulli's points (c != 1) are not on it.
  detail::require(weight_decay == 0.0 || sampling != Sampling::bernoulli, "StabilityRegion::band",
                  "a region with weight decay covers without and with replacement only, not Bernoulli sampling");
  const auto [c, s] = region_coordinates(sampling, samples, batch);
  const EtaInterval gb = g_bounds(s);
  EtaInterval out;
  out.low = std::isfinite(gb.high) ? 1.0 / (c * gb.high) : 0.0;
  out.high = gb.low > 0 ? 1.0 / (c * gb.low) : std::numeric_limits<double>::infinity();
  return out;
}

StabilityRegion detail::shifted_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                       const std::vector<Index>& batches, const SolverOptions& opt,
                                       double weight_decay) {
  const auto t0 = std::chrono::steady_clock::now();
  opt.validate();
  detail::check_region_lists(schemes, batches, g.samples());
  detail::require_device(opt);
  const detail::UnitGeometry u(g);
  if (u.rescaled()) {  // computed in rescaled units, reported in the user's (theory/scaling.md)
    StabilityRegion out = shifted_region(u.get(), schemes, batches, opt, weight_decay / u.unit());
    const double unit = u.unit();
    out.lambda_max = g.lambda_max();
    out.eta_gd = 2.0 / (g.lambda_max() + weight_decay);
    out.eta_mean = out.eta_gd;
    out.weight_decay = weight_decay;
    for (RegionCurve& c : out.curves)
      for (RegionPoint& p : c.points) {
        p.eta_star /= unit;
        p.eta_low /= unit;
        p.eta_high /= unit;
      }
    for (RegionTangent& t : out.tangents) {
      t.p *= unit;
      t.r *= unit;
    }
    for (RegionKnot& k : out.knots) k.upper *= unit;
    return out;
  }
  StabilityRegion out;
  out.samples = g.samples();
  out.outputs = g.outputs();
  out.rank = g.rank();
  out.lambda_max = g.hessian_eigenvalues()(0);
  out.eta_gd = 2.0 / (out.lambda_max + weight_decay);  // GD with weight decay: theory/weight_decay.md, section 3
  out.eta_mean = out.eta_gd;
  out.weight_decay = weight_decay;
  const detail::FamilyShift shift{weight_decay, 1.0};  // c = 1: without and with replacement only when lambda > 0

  const std::vector<double> svals = detail::region_s_values(schemes, batches, g.samples());
  detail::FamilyResult fam;
  if (!svals.empty()) fam = detail::geometry_family(g, svals, opt, false, shift);
  fam.members.push_back(detail::geometry_family_at_zero(g, shift));
  out.report.matvecs = fam.matvecs;
  out.report.single_precision_matvecs = fam.low_precision_matvecs;
  out.report.apply_seconds = fam.apply_seconds;
  out.report.iterations = fam.restarts;
  out.subspace_dimension = fam.subspace_dimension;
  out.report.method = svals.empty() ? Method::dense : fam.method;
  out.report.device = fam.device;
  detail::assemble_region(out, fam.members, schemes, batches);
  if (out.converged()) out.report.message = "converged";
  detail::set_region_seconds(out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

StabilityRegion stability_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                 const std::vector<Index>& batches, const SolverOptions& opt) {
  return detail::shifted_region(g, schemes, batches, opt, 0.0);
}

namespace {
StabilityRegion momentum_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                const std::vector<Index>& batches, const Momentum& momentum, double weight_decay,
                                const SolverOptions& options, double decoupled = 0.0,
                                const detail::MeanBasis* mean = nullptr);
}  // namespace

// With momentum: eta*(B) of every point by momentum_threshold's search (theory/momentum.md, section 7).
StabilityRegion stability_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                 const std::vector<Index>& batches, Momentum momentum, const SolverOptions& options) {
  if (momentum.beta == 0.0) {  // plain SGD: the shared-subspace region (above)
    StabilityRegion out = stability_region(g, schemes, batches, options);
    out.momentum = momentum;
    out.eta_mean = out.eta_gd;
    return out;
  }
  return momentum_region(g, schemes, batches, momentum, 0.0, options);
}

StabilityRegion weight_decay_momentum_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                             const std::vector<Index>& batches, Momentum momentum,
                                             double weight_decay, const SolverOptions& options) {
  detail::require(momentum.beta > 0.0, "weight_decay_momentum_region",
                  "momentum beta must be > 0 (without momentum use weight_decay_region)");
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, "weight_decay_momentum_region",
                  "weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  return momentum_region(g, schemes, batches, momentum, weight_decay, options);
}

namespace {

// The momentum region with L2 weight decay lambda (0: none; theory/momentum.md,
// sections 7-8); with `mean`, the mean dynamics are its (Adam's or RMSProp's
// own L2 decay, theory/adaptive.md section 6), whose largest eigenvalue sets
// the full-batch limit.
StabilityRegion momentum_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                const std::vector<Index>& batches, const Momentum& momentum, double weight_decay,
                                const SolverOptions& options, double decoupled, const detail::MeanBasis* mean) {
  const auto t0 = std::chrono::steady_clock::now();
  options.validate();
  momentum.validate();
  detail::check_region_lists(schemes, batches, g.samples());
  const std::vector<std::vector<MomentumThresholdResult>> levels =
      detail::momentum_levels(g, schemes, batches, momentum, options, weight_decay, decoupled, mean);
  StabilityRegion out;
  out.samples = g.samples();
  out.outputs = g.outputs();
  out.rank = g.rank();
  out.lambda_max = g.lambda_max();
  out.eta_gd = 2.0 / (out.lambda_max + weight_decay);
  out.momentum = momentum;
  out.weight_decay = weight_decay;
  out.eta_mean = detail::mean_limit(
      momentum, mean != nullptr ? mean->eigenvalues.maxCoeff() : out.lambda_max + weight_decay, decoupled);
  if (mean != nullptr) out.eta_gd = out.eta_mean;  // GD's 2 / (lambda_max + lambda) is not this mean's limit
  out.report.status = Status::converged;
  out.report.method = Method::dense;
  for (std::size_t k = 0; k < schemes.size(); ++k) {
    RegionCurve curve{schemes[k], {}};
    for (const MomentumThresholdResult& r : levels[k]) {
      RegionPoint p;
      p.batch = r.batch;
      p.eta_star = r.eta_star;
      p.eta_low = r.eta_low;
      p.eta_high = r.eta_high;
      p.s = detail::noise_level(r.sampling, g.samples(), r.batch);
      p.report = r.report;
      out.report.matvecs += p.report.matvecs;
      if (p.report.method == Method::lanczos) out.report.method = Method::lanczos;
      if (!p.converged() && out.converged()) {
        out.report.status = p.report.status;
        out.report.message = to_string(schemes[k]) + ", B = " + std::to_string(r.batch) + ": " + p.report.message;
      }
      curve.points.push_back(std::move(p));
    }
    out.curves.push_back(std::move(curve));
  }
  if (out.converged()) out.report.message = "converged";
  detail::set_region_seconds(out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

}  // namespace

StabilityRegion detail::decayed_momentum_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                                const std::vector<Index>& batches, const Momentum& mo,
                                                double weight_decay, double decoupled, const SolverOptions& options,
                                                const MeanBasis* mean) {
  return momentum_region(g, schemes, batches, mo, weight_decay, options, decoupled, mean);
}

}  // namespace sgdstab
