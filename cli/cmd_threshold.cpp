// `sgdstab threshold`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

// Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6): from the
// Jacobian and P, on the whole parameter space.
int adaptive_l2_threshold(const Args& args, const OptimizerSetting& opt, Sampling sampling, const SolverOptions& so,
                          double wd, std::ostream& out, std::ostream& err) {
  if (args.has("direction")) throw UsageError("--direction is not available with --optimizer " + opt.name);
  const long long scan = args.integer_or("scan", 0);
  if (scan < 0) throw UsageError("--scan: K must be >= 0, got " + std::to_string(scan));
  const AdaptiveL2Input in = adaptive_l2_input(args);
  const Index b = batch_of(args, in.geometry);
  const MomentumThresholdResult r = adam_l2_threshold(in.jacobian, in.outputs, in.preconditioner, b, sampling,
                                                      opt.beta1(), wd, so, static_cast<Index>(scan), in.reduction);
  json j = with_options(momentum_threshold_json(in.geometry, r), so);
  echo_inputs(args, opt, j);
  adam_fields(j);  // the full-batch limit is eta_mean, not 2 / lambda_max
  return finish(j, r.status(), out, err);
}

}  // namespace

int cmd_threshold(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  const SolverOptions so = solver_options(args);
  const double wd = weight_decay_option(args);  // a bad LAMBDA: a usage error before any work
  const OptimizerSetting opt = optimizer_option(args);
  if (opt.l2_adaptive) return adaptive_l2_threshold(args, opt, sampling, so, wd, out, err);
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  if (opt.momentum) {
    if (args.has("direction")) throw UsageError("--direction is not available with --momentum");
    const long long scan = args.integer_or("scan", 0);
    if (scan < 0) throw UsageError("--scan: K must be >= 0, got " + std::to_string(scan));
    const MomentumThresholdResult r =
        opt.decoupled_weight_decay ? adamw_threshold(g, b, sampling, opt.beta1(), wd, so, static_cast<Index>(scan))
        : opt.adam                 ? adam_threshold(g, b, sampling, opt.beta1(), so, static_cast<Index>(scan))
                 : weight_decay_momentum_threshold(g, b, sampling, *opt.momentum, wd, so, static_cast<Index>(scan));
    json j = with_options(momentum_threshold_json(g, r), so);
    echo_inputs(args, opt, j);
    return finish(j, r.status(), out, err);
  }
  if (args.has("scan")) throw UsageError("--scan needs --momentum");
  const ThresholdResult r = args.has("weight-decay") ? weight_decay_threshold(g, b, sampling, wd, so)
                                                     : stability_threshold(g, b, sampling, so);
  json j = with_options(threshold_json(g, r), so);
  j["weight_decay"] = wd;
  j["eta_gd"] = 2.0 / (g.lambda_max() + wd);  // GD with weight decay (theory/weight_decay.md, section 3)
  echo_inputs(args, opt, j);
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

}  // namespace sgdstab::cli
