// `sgdstab curve`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_curve(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const double wd = weight_decay_option(args);
  const OptimizerSetting opt = optimizer_option(args);
  if (opt.l2_adaptive) {  // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6)
    const AdaptiveL2Input in = adaptive_l2_input(args);
    const std::vector<Index> batches = batches_option(args, in.geometry.samples());
    const auto curve = adam_l2_threshold_curve(in.jacobian, in.outputs, in.preconditioner, batches, sampling,
                                               opt.beta1(), wd, so, in.reduction);
    Status status = Status::converged;
    for (const auto& r : curve) status = combine(status, r.status());
    json j = with_options(momentum_curve_json(in.geometry, curve), so);
    echo_inputs(args, opt, j);
    adam_fields(j);  // the full-batch limit is eta_mean, not 2 / lambda_max
    return finish(j, status, out, err);
  }
  const Geometry g = load_geometry(args);
  if (opt.momentum) {
    const std::vector<Index> batches = batches_option(args, g.samples());
    const auto curve = opt.decoupled_weight_decay ? adamw_threshold_curve(g, batches, sampling, opt.beta1(), wd, so)
                       : opt.adam                 ? adam_threshold_curve(g, batches, sampling, opt.beta1(), so)
                                : weight_decay_momentum_threshold_curve(g, batches, sampling, *opt.momentum, wd, so);
    Status status = Status::converged;
    for (const auto& r : curve) status = combine(status, r.status());
    json j = with_options(momentum_curve_json(g, curve), so);
    echo_inputs(args, opt, j);
    return finish(j, status, out, err);
  }
  const std::vector<Index> batches = batches_option(args, g.samples());
  const std::vector<ThresholdResult> curve = args.has("weight-decay")
                                                 ? weight_decay_threshold_curve(g, batches, sampling, wd, so)
                                                 : threshold_curve(g, batches, sampling, so);
  json j = with_options(curve_json(g, curve, wd), so);
  echo_inputs(args, opt, j);
  return finish(j, curve_status(curve), out, err);
}

}  // namespace sgdstab::cli
