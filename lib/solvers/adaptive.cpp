// Adam and RMSProp with a frozen preconditioner as heavy-ball momentum SGD
// in preconditioned coordinates (theory/adaptive.md).
#include "sgdstab/adaptive.hpp"

#include <cmath>

#include "foundations/check.hpp"
#include "foundations/stopwatch.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

namespace {

Momentum adam_momentum(double beta1) {
  detail::require(std::isfinite(beta1) && beta1 >= 0.0 && beta1 < 1.0, "adam",
                  "beta1 must be in [0, 1), got " + detail::fmt(beta1));
  return Momentum{beta1, false};
}

// The decoupled decay in heavy-ball units: lr wd = eta mu with eta = lr (1 - beta1).
double decoupled_of(double weight_decay, double beta1, const char* where) {
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, where,
                  "AdamW's weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  return weight_decay / (1.0 - beta1);
}

// Heavy-ball learning rates -> Adam's (theory/adaptive.md, eq. 3).
MomentumThresholdResult to_adam_units(MomentumThresholdResult r, double beta1) {
  const double f = 1.0 / (1.0 - beta1);
  r.eta_star *= f;
  r.eta_mean *= f;
  r.eta_low *= f;
  r.eta_high *= f;
  for (auto& e : r.evaluations) e.first *= f;
  for (auto& iv : r.stable_intervals) {
    iv.first *= f;
    iv.second *= f;
  }
  return r;
}

}  // namespace

double adam_heavy_ball_lr(double lr, double beta1) { return lr * (1.0 - adam_momentum(beta1).beta); }

MomentumThresholdResult adam_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                       const SolverOptions& options, Index scan_points) {
  const Momentum m = adam_momentum(beta1);
  return to_adam_units(momentum_threshold(preconditioned, batch, sampling, m, options, scan_points), beta1);
}

std::vector<MomentumThresholdResult> adam_threshold_curve(const Geometry& preconditioned,
                                                          const std::vector<Index>& batches, Sampling sampling,
                                                          double beta1, const SolverOptions& options) {
  const Momentum m = adam_momentum(beta1);
  std::vector<MomentumThresholdResult> out = momentum_threshold_curve(preconditioned, batches, sampling, m, options);
  for (auto& r : out) r = to_adam_units(std::move(r), beta1);
  return out;
}

RadiusResult adam_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                  double beta1, const SolverOptions& options) {
  detail::require(std::isfinite(lr) && lr > 0.0, "adam_spectral_radius",
                  "the learning rate must be finite and > 0, got " + detail::fmt(lr));
  RadiusResult r = momentum_spectral_radius(preconditioned, adam_heavy_ball_lr(lr, beta1), batch, sampling,
                                            adam_momentum(beta1), options);
  r.lr = lr;
  return r;
}

namespace {

MomentumThresholdResult adamw_units(MomentumThresholdResult r, double beta1, double weight_decay) {
  r = to_adam_units(std::move(r), beta1);
  r.weight_decay = weight_decay;
  r.decoupled_weight_decay = true;
  return r;
}

}  // namespace

MomentumThresholdResult adamw_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                        double weight_decay, const SolverOptions& options, Index scan_points) {
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_threshold");
  return adamw_units(detail::timed([&] {
                       return detail::decayed_momentum_threshold(preconditioned, batch, sampling, m, 0.0, mu, options,
                                                                 scan_points, "adamw_threshold");
                     }),
                     beta1, weight_decay);
}

std::vector<MomentumThresholdResult> adamw_threshold_curve(const Geometry& preconditioned,
                                                           const std::vector<Index>& batches, Sampling sampling,
                                                           double beta1, double weight_decay,
                                                           const SolverOptions& options) {
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_threshold_curve");
  std::vector<MomentumThresholdResult> out = detail::decayed_momentum_curve(
      preconditioned, batches, sampling, m, 0.0, mu, options, "adamw_threshold_curve");
  for (auto& r : out) r = adamw_units(std::move(r), beta1, weight_decay);
  return out;
}

RadiusResult adamw_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                   double beta1, double weight_decay, const SolverOptions& options) {
  detail::require(std::isfinite(lr) && lr > 0.0, "adamw_spectral_radius",
                  "the learning rate must be finite and > 0, got " + detail::fmt(lr));
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_spectral_radius");
  RadiusResult r = detail::timed([&] {
    return detail::decayed_momentum_radius(preconditioned, adam_heavy_ball_lr(lr, beta1), batch, sampling, m, 0.0, mu,
                                           options, "adamw_spectral_radius");
  });
  r.lr = lr;
  return r;
}

StabilityRegion adam_region(const Geometry& preconditioned, const std::vector<Sampling>& schemes,
                            const std::vector<Index>& batches, double beta1, double weight_decay,
                            const SolverOptions& options) {
  detail::require(std::isfinite(beta1) && beta1 < 1.0, "adam_region",
                  "beta1 must be in (0, 1), got " + detail::fmt(beta1));
  const Momentum m = adam_momentum(beta1);
  detail::require(beta1 > 0.0, "adam_region",
                  "beta1 must be > 0 (beta1 = 0 is RMSProp: stability_region, or weight_decay_region with "
                  "weight_decay, on the preconditioned geometry)");
  const double mu = decoupled_of(weight_decay, beta1, "adam_region");
  StabilityRegion out = detail::decayed_momentum_region(preconditioned, schemes, batches, m, 0.0, mu, options);
  // Heavy-ball learning rates -> Adam's (theory/adaptive.md, eq. 4); eta_gd is the full-batch limit.
  const double f = 1.0 / (1.0 - beta1);
  out.eta_mean *= f;
  out.eta_gd = out.eta_mean;
  for (RegionCurve& c : out.curves)
    for (RegionPoint& p : c.points) {
      p.eta_star *= f;
      p.eta_low *= f;
      p.eta_high *= f;
    }
  out.adam = true;
  out.weight_decay = weight_decay;
  out.decoupled_weight_decay = weight_decay > 0.0;
  return out;
}

}  // namespace sgdstab

