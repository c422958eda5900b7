#pragma once
// The JSON of each stability command, built from the library's results: one
// builder per command, shared by the program (cli/cmd_*.cpp) and the Python
// package (python/module.cpp), so that `to_dict()` in Python and the CLI's
// JSON are the same keys and the same numbers.
#include <functional>
#include <string>
#include <vector>

#include "inputs.hpp"
#include "report.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/covariance.hpp"
#include "sgdstab/momentum.hpp"

namespace sgdstab::cli {

/// `sgdstab threshold`.
json threshold_json(const GeometrySummary& g, const ThresholdResult& r);
/// sgdstab band: the certified band eta_low <= eta* <= eta_high (theory/band.md).
json band_json(const Geometry& g, const BandResult& r);
/// The band from a model's products (`sgdstab band --matrix-free`).
json band_json(const LinearizedModel& m, const BandResult& r);
/// `sgdstab covariance`: the stationary covariance (theory/covariance.md).
json covariance_json(const GeometrySummary& g, const CovarianceResult& r);
/// `sgdstab radius`.
json radius_json(const GeometrySummary& g, const RadiusResult& r);
/// `sgdstab threshold --momentum BETA [--nesterov]`.
json momentum_threshold_json(const Geometry& g, const MomentumThresholdResult& r);
/// `sgdstab radius --momentum BETA [--nesterov]`.
json momentum_radius_json(const Geometry& g, const RadiusResult& r, const Momentum& m, double weight_decay = 0.0);
/// `sgdstab curve --momentum BETA [--nesterov]`: the curve's fields plus
/// momentum, nesterov, eta_mean, and per point eta_low / eta_high.
json momentum_curve_json(const Geometry& g, const std::vector<MomentumThresholdResult>& curve);
/// `sgdstab bounds`.
json bounds_report_json(const Geometry& g, const StabilityBounds& b);

/// A user's (lr, B) placed on a region (`--mark LR,B`).
struct Mark {
  double lr = 0.0;
  Index batch = 0;
};

/// `sgdstab region`: the region, its JSON (marks and plot included) and the
/// status that decides the exit code. Writes the SVG picture to `plot` when
/// not empty. With momentum (beta > 0) the points, marks and picture are
/// momentum SGD's (the plain-SGD bounds are left off the picture); with
/// weight decay (> 0) SGD with weight decay's, likewise (with momentum too:
/// weight_decay_momentum_region).
/// \throws sgdstab::invalid_argument on a mark outside 1..n.
struct RegionReport {
  StabilityRegion region;
  json j;
  Status status = Status::not_converged;
};
RegionReport region_report(const Geometry& g, const std::vector<Sampling>& schemes,
                           const std::vector<Index>& batches, const std::vector<Mark>& marks,
                           const std::string& plot, const SolverOptions& so, const Momentum& momentum = {},
                           double weight_decay = 0.0);

/// region_report for Adam / AdamW (adam_region, in Adam's lr; marks judged by
/// adamw_spectral_radius); beta1 > 0.
RegionReport adam_region_report(const Geometry& g, const std::vector<Sampling>& schemes,
                                const std::vector<Index>& batches, const std::vector<Mark>& marks,
                                const std::string& plot, const SolverOptions& so, double beta1, double weight_decay);

/// region_report for Adam's (beta1 > 0) or RMSProp's (beta1 = 0) own L2 decay
/// (adam_l2_region, in the optimizer's lr; marks judged by
/// adam_l2_spectral_radius on the whole 2p state); the JSON's full-batch
/// limit is eta_mean (no eta_gd).
RegionReport adam_l2_region_report(const AdaptiveL2Input& in, const std::vector<Sampling>& schemes,
                                   const std::vector<Index>& batches, const std::vector<Mark>& marks,
                                   const std::string& plot, const SolverOptions& so, double beta1,
                                   double weight_decay);

/// rho at a mark (lr, B, scheme): how a region report judges its marks.
using MarkRadius = std::function<RadiusResult(double lr, Index batch, Sampling sampling)>;
/// The same report for a region computed elsewhere (sgdstab-mpi), its marks
/// judged by `radius`; the picture shows the bounds of `sgdstab bounds` when
/// `bounds` is given (they need the whole geometry), none otherwise.
/// \throws sgdstab::invalid_argument on a bad mark.
RegionReport region_report_of(StabilityRegion region, const Geometry* bounds, const std::vector<Mark>& marks,
                              const std::string& plot, const SolverOptions& so, const MarkRadius& radius);

}  // namespace sgdstab::cli
