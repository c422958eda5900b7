// The JSON of each stability command (results.hpp).
#include "results.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "plot.hpp"
#include "sgdstab/adaptive.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/weight_decay.hpp"
#include "sgdstab/matrix_io.hpp"

namespace sgdstab::cli {

namespace {

// The geometry's fields, then the batch size and the scheme: how a result at one B begins.
json at_batch(const GeometrySummary& g, Index batch, Sampling sampling) {
  json j;
  geometry_fields(j, g);
  j["batch"] = batch;
  j["sampling"] = to_string(sampling);
  return j;
}

}  // namespace

json threshold_json(const GeometrySummary& g, const ThresholdResult& r) {
  json j = at_batch(g, r.batch, r.sampling);
  j["eta_star"] = r.eta_star;
  j["momentum"] = 0.0;
  j["nesterov"] = false;
  j["weight_decay"] = 0.0;
  hessian_fields(j, g);
  report_fields(j, r.report);
  j["space"] = to_string(g.space);
  j["loss_convention"] = kLossConvention;
  return j;
}

namespace {

// The band's own fields, whichever input it came from.
void band_fields(json& j, const BandResult& r) {
  j["batch"] = r.batch;
  j["sampling"] = to_string(r.sampling);
  j["eta_low"] = r.eta_low;
  j["eta_high"] = r.eta_high;
  j["relative_width"] = r.relative_width;
  j["eta_low_kind"] = r.eta_low_kind;
  j["delta"] = r.delta;
  j["eta_low_certified"] = r.eta_low_certified;
  j["trial_dimension"] = r.trial_dimension;
  j["low_witness"] = r.low_witness;
  report_fields(j, r.report);
  j["seconds"] = r.report.seconds;
  j["loss_convention"] = kLossConvention;
}

}  // namespace

json band_json(const Geometry& g, const BandResult& r) {
  json j = at_batch(g, r.batch, r.sampling);
  hessian_fields(j, g);
  band_fields(j, r);
  j["matrix_free"] = false;
  return j;
}

json band_json(const LinearizedModel& m, const BandResult& r) {
  json j;
  j["samples"] = m.samples();
  j["outputs"] = m.outputs();
  j["params"] = m.params();
  band_fields(j, r);
  j["matrix_free"] = true;
  j["subspace_dimension"] = r.subspace_dimension;
  j["subspace_doublings"] = r.subspace_doublings;
  j["products"] = r.products;
  return j;
}

json covariance_json(const GeometrySummary& g, const CovarianceResult& r) {
  json j;
  j["lr"] = r.lr;
  j["batch"] = r.batch;
  j["sampling"] = to_string(r.sampling);
  j["momentum"] = r.momentum.beta;
  j["nesterov"] = r.momentum.nesterov;
  j["weight_decay"] = r.weight_decay;
  if (r.decoupled_weight_decay > 0.0) j["decoupled_weight_decay"] = r.decoupled_weight_decay;
  j["rho"] = r.rho;
  j["trace"] = r.trace;
  j["top_eigenvalues"] = std::vector<double>(r.top_eigenvalues.data(), r.top_eigenvalues.data() + r.top_eigenvalues.size());
  j["excess_loss"] = r.excess_loss;
  j["gradient_noise_trace"] = r.gradient_noise_trace;
  j["mean_gradient_norm"] = r.mean_gradient_norm;
  report_fields(j, r.report);
  geometry_fields(j, g);
  j["definition"] = r.momentum.beta > 0.0 && r.decoupled_weight_decay > 0.0
                        ? "Sigma = lim E[delta delta^T] of momentum SGD b <- beta b + H_B delta + g_B - gbar, delta <- "
                          "(1 - lr decoupled_weight_decay) delta - lr b (the decoupled decay; gbar + "
                          "decoupled_weight_decay (1 - beta) theta* = 0), g_i = J_i^T r_i; excess_loss = 1/2 tr(H "
                          "Sigma); gradient_noise_trace = (1/n) sum |g_i|^2"
                    : r.momentum.beta > 0.0 && r.weight_decay > 0.0
                        ? "Sigma = lim E[delta delta^T] of momentum SGD b <- beta b + (H_B + weight_decay) delta + g_B + "
                          "weight_decay theta*, delta <- delta - lr b (Nesterov: - lr (... + beta b)), g_i = J_i^T r_i, "
                          "theta* the minimum of the loss + weight_decay/2 |theta|^2; excess_loss = 1/2 tr(H Sigma) "
                          "(of the loss); gradient_noise_trace = (1/n) sum |g_i|^2"
                    : r.momentum.beta > 0.0
                        ? "Sigma = lim E[delta delta^T] of momentum SGD b <- beta b + H_B delta + g_B, delta <- delta - "
                          "lr b (Nesterov: - lr (H_B delta + g_B + beta b)), g_i = J_i^T r_i; excess_loss = 1/2 tr(H "
                          "Sigma); gradient_noise_trace = (1/n) sum |g_i|^2"
                        : r.weight_decay > 0.0
                        ? "Sigma = lim E[delta delta^T] of delta <- ((1 - lr weight_decay) I - lr H_B) delta - lr (g_B + "
                          "weight_decay theta*), g_i = J_i^T r_i, theta* the minimum of the loss + weight_decay/2 "
                          "|theta|^2; excess_loss = 1/2 tr(H Sigma) (of the loss; the regularized one adds "
                          "weight_decay/2 trace); gradient_noise_trace = (1/n) sum |g_i|^2"
                        : "Sigma = lim E[delta delta^T] of delta <- (I - lr H_B) delta - lr g_B, g_i = J_i^T r_i; "
                          "excess_loss = 1/2 tr(H Sigma); gradient_noise_trace = (1/n) sum |g_i|^2";
  j["loss_convention"] = kLossConvention;
  return j;
}

json radius_json(const GeometrySummary& g, const RadiusResult& r) {
  json j;
  j["rho"] = r.rho;
  j["lr"] = r.lr;
  j["batch"] = r.batch;
  j["sampling"] = to_string(r.sampling);
  j["momentum"] = 0.0;
  j["nesterov"] = false;
  j["weight_decay"] = 0.0;
  report_fields(j, r.report);
  geometry_fields(j, g);
  j["loss_convention"] = kLossConvention;
  return j;
}

json momentum_threshold_json(const Geometry& g, const MomentumThresholdResult& r) {
  json j;
  geometry_fields(j, g);
  j["batch"] = r.batch;
  j["sampling"] = to_string(r.sampling);
  j["momentum"] = r.momentum.beta;
  j["nesterov"] = r.momentum.nesterov;
  j["weight_decay"] = r.weight_decay;
  if (r.decoupled_weight_decay) j["weight_decay_decoupled"] = true;  // AdamW's (theory/adaptive.md, section 5)
  j["eta_star"] = r.eta_star;
  j["eta_low"] = r.eta_low;
  j["eta_high"] = r.eta_high;
  j["eta_mean"] = r.eta_mean;
  json intervals = json::array();
  for (const auto& [lo, hi] : r.stable_intervals) intervals.push_back(json::array({lo, hi}));
  j["stable_intervals"] = intervals;
  json evals = json::array();
  for (const auto& [eta, kappa] : r.evaluations) evals.push_back({{"lr", eta}, {"kappa", kappa}});
  j["kappa_evaluations"] = evals;
  hessian_fields(j, g);
  j["eta_gd"] = 2.0 / (g.lambda_max() + r.weight_decay);  // GD with weight decay (theory/weight_decay.md, section 3)
  report_fields(j, r.report);
  j["space"] = to_string(g.space());
  j["loss_convention"] = kLossConvention;
  return j;
}

json momentum_curve_json(const Geometry& g, const std::vector<MomentumThresholdResult>& curve) {
  json j;
  j["sampling"] = to_string(curve.front().sampling);
  j["momentum"] = curve.front().momentum.beta;
  j["nesterov"] = curve.front().momentum.nesterov;
  j["weight_decay"] = curve.front().weight_decay;
  geometry_fields(j, g);
  hessian_fields(j, g);
  j["eta_gd"] = 2.0 / (g.lambda_max() + curve.front().weight_decay);  // GD with weight decay
  j["eta_mean"] = curve.front().eta_mean;
  json pts = json::array();
  for (const MomentumThresholdResult& r : curve) {
    const std::pair<double, double> bracket{r.eta_low, r.eta_high};
    pts.push_back(curve_point(r.batch, r.eta_star, r.report, &bracket));
  }
  j["points"] = pts;
  j["loss_convention"] = kLossConvention;
  return j;
}

json momentum_radius_json(const Geometry& g, const RadiusResult& r, const Momentum& m, double weight_decay) {
  json j = radius_json(g, r);
  j["momentum"] = m.beta;
  j["nesterov"] = m.nesterov;
  j["weight_decay"] = weight_decay;
  return j;
}

json bounds_report_json(const Geometry& g, const StabilityBounds& b) {
  json j = bounds_json(b);
  geometry_fields(j, g);
  j["loss_convention"] = kLossConvention;
  return j;
}

namespace {

// rho(T) at each mark for each scheme: {lr, batch, sampling, stable, rho, status}.
json mark_rows(const StabilityRegion& region, const std::vector<Mark>& marks, const MarkRadius& radius,
               std::vector<RegionMark>& drawn, Status& status) {
  json rows = json::array();
  for (const Mark& m : marks)
    for (std::size_t k = 0; k < region.curves.size(); ++k) {
      const RadiusResult r = radius(m.lr, m.batch, region.curves[k].sampling);
      status = combine(status, r.status());
      json row;
      row["lr"] = m.lr;
      row["batch"] = m.batch;
      row["sampling"] = to_string(region.curves[k].sampling);
      row["stable"] = r.rho <= 1.0;
      row["rho"] = r.rho;
      row["status"] = to_string(r.status());
      rows.push_back(row);
      drawn.push_back({m.lr, static_cast<double>(m.batch), r.rho <= 1.0, k});
    }
  return rows;
}

// The bounds of `sgdstab bounds` at every point (given eta* and mu_*), for the
// picture; none with momentum or weight decay (they bound plain SGD's eta*).
std::vector<std::vector<RegionBound>> bound_rows(const Geometry& g, const StabilityRegion& region,
                                                 const SolverOptions& so) {
  if (region.momentum.beta > 0.0 || region.weight_decay > 0.0) return {};
  const double mu_star = worst_case_alignment(g).mu_star;
  std::vector<std::vector<RegionBound>> out;
  for (const RegionCurve& curve : region.curves) {
    std::vector<RegionBound> row;
    for (const RegionPoint& p : curve.points) {
      ThresholdResult known;
      known.batch = p.batch;
      known.sampling = curve.sampling;
      known.eta_star = p.eta_star;
      known.report.status = p.status();
      const StabilityBounds b = stability_bounds(g, p.batch, curve.sampling, so, &known, mu_star);
      double necessary = std::min({b.eta_gd, b.eta_necessary_rank1, b.eta_necessary_trace});
      if (b.eta_alignment) necessary = std::min(necessary, *b.eta_alignment);
      if (b.eta_trace_b1) necessary = std::min(necessary, *b.eta_trace_b1);
      row.push_back({static_cast<double>(p.batch), b.eta_sufficient, necessary});
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace

void write_region_plot(const std::string& path, const Geometry* g, const StabilityRegion& region,
                       const std::vector<RegionMark>& marks, const SolverOptions& so) {
  write_text(path, region_svg(region, g ? bound_rows(*g, region, so) : std::vector<std::vector<RegionBound>>{}, marks,
                              "Stability region: n = " + std::to_string(region.samples) + ", C = " +
                                  std::to_string(region.outputs) + ", rank " + std::to_string(region.rank) +
                                  (region.adam ? (region.momentum.beta > 0.0
                                                     ? std::string(region.decoupled_weight_decay ? ", AdamW" : ", Adam") +
                                                           " beta1 " + json(region.momentum.beta).dump()
                                                     : std::string(", RMSProp"))
                                   : region.momentum.beta > 0.0
                                       ? std::string(region.momentum.nesterov ? ", Nesterov" : ", heavy-ball") +
                                             " momentum " + json(region.momentum.beta).dump()
                                       : std::string()) +
                                  (region.weight_decay > 0.0 ? std::string(region.decoupled_weight_decay
                                                                               ? ", decoupled weight decay "
                                                                               : ", weight decay ") +
                                                                   json(region.weight_decay).dump()
                                                             : std::string())));
}

namespace {

void check_marks(Index samples, const std::vector<Mark>& marks) {
  for (const Mark& m : marks) {
    if (!(m.lr > 0) || !std::isfinite(m.lr))
      throw sgdstab::invalid_argument("mark: the learning rate must be finite and > 0, got " + std::to_string(m.lr));
    if (m.batch < 1 || m.batch > samples)
      throw sgdstab::invalid_argument("mark: the batch size must satisfy 1 <= B <= n = " + std::to_string(samples) +
                                      ", got " + std::to_string(m.batch));
  }
}

}  // namespace

RegionReport region_report_of(StabilityRegion region, const Geometry* bounds, const std::vector<Mark>& marks,
                              const std::string& plot, const SolverOptions& so, const MarkRadius& radius) {
  check_marks(region.samples, marks);
  RegionReport out;
  out.region = std::move(region);
  out.j = with_options(region_json(out.region), so);
  out.status = out.region.status();
  std::vector<RegionMark> drawn;
  if (!marks.empty()) out.j["marks"] = mark_rows(out.region, marks, radius, drawn, out.status);
  if (!plot.empty()) {
    write_region_plot(plot, bounds, out.region, drawn, so);
    out.j["plot"] = plot;
  }
  return out;
}

RegionReport region_report(const Geometry& g, const std::vector<Sampling>& schemes,
                           const std::vector<Index>& batches, const std::vector<Mark>& marks,
                           const std::string& plot, const SolverOptions& so, const Momentum& momentum,
                           double weight_decay) {
  check_marks(g.samples(), marks);
  const MarkRadius radius = [&](double lr, Index b, Sampling s) {
    if (momentum.beta > 0.0) return weight_decay_momentum_spectral_radius(g, lr, b, s, momentum, weight_decay, so);
    return weight_decay > 0.0 ? weight_decay_spectral_radius(g, lr, b, s, weight_decay, so)
                              : spectral_radius(g, lr, b, s, so);
  };
  StabilityRegion region = momentum.beta > 0.0 ? weight_decay_momentum_region(g, schemes, batches, momentum, weight_decay, so)
                           : weight_decay > 0.0 ? weight_decay_region(g, schemes, batches, weight_decay, so)
                                                : stability_region(g, schemes, batches, momentum, so);
  return region_report_of(std::move(region), &g, marks, plot, so, radius);
}

RegionReport adam_region_report(const Geometry& g, const std::vector<Sampling>& schemes,
                                const std::vector<Index>& batches, const std::vector<Mark>& marks,
                                const std::string& plot, const SolverOptions& so, double beta1, double weight_decay) {
  check_marks(g.samples(), marks);
  const MarkRadius radius = [&](double lr, Index b, Sampling s) {
    return adamw_spectral_radius(g, lr, b, s, beta1, weight_decay, so);
  };
  return region_report_of(adam_region(g, schemes, batches, beta1, weight_decay, so), &g, marks, plot, so, radius);
}

RegionReport adam_l2_region_report(const AdaptiveL2Input& in, const std::vector<Sampling>& schemes,
                                   const std::vector<Index>& batches, const std::vector<Mark>& marks,
                                   const std::string& plot, const SolverOptions& so, double beta1,
                                   double weight_decay) {
  check_marks(in.geometry.samples(), marks);
  const MarkRadius radius = [&](double lr, Index b, Sampling s) {
    return adam_l2_spectral_radius(in.jacobian, in.outputs, in.preconditioner, lr, b, s, beta1, weight_decay, so,
                                   in.reduction);
  };
  RegionReport out = region_report_of(adam_l2_region(in.jacobian, in.outputs, in.preconditioner, schemes, batches,
                                                     beta1, weight_decay, so, in.reduction),
                                      &in.geometry, marks, plot, so, radius);
  // The full-batch limit is eta_mean, also for RMSProp without decay (a plain SGD region there).
  out.j["eta_mean"] = out.region.eta_mean;
  adam_fields(out.j);
  return out;
}

}  // namespace sgdstab::cli

