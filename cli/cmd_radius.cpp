// `sgdstab radius`.
#include <ostream>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_radius(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  const SolverOptions so = solver_options(args);
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  const double wd = weight_decay_option(args);
  const OptimizerSetting opt = optimizer_option(args);
  if (opt.l2_adaptive) {  // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6): the whole state
    if (args.has("direction")) throw UsageError("--direction is not available with --optimizer " + opt.name);
    const AdaptiveL2Input in = adaptive_l2_input(args);
    const Index b = batch_of(args, in.geometry);
    const RadiusResult r = adam_l2_spectral_radius(in.jacobian, in.outputs, in.preconditioner, lr, b, sampling,
                                                   opt.beta1(), wd, so, in.reduction);
    json j = with_options(momentum_radius_json(in.geometry, r, Momentum{opt.beta1(), false}, wd), so);
    echo_inputs(args, opt, j);
    adam_fields(j);  // the full-batch limit is eta_mean, not 2 / lambda_max
    return finish(j, r.status(), out, err);
  }
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  if (opt.momentum) {
    if (args.has("direction")) throw UsageError("--direction is not available with --momentum");
    const RadiusResult r = opt.decoupled_weight_decay ? adamw_spectral_radius(g, lr, b, sampling, opt.beta1(), wd, so)
                           : opt.adam               ? adam_spectral_radius(g, lr, b, sampling, opt.beta1(), so)
                                    : weight_decay_momentum_spectral_radius(g, lr, b, sampling, *opt.momentum, wd, so);
    json j = with_options(momentum_radius_json(g, r, *opt.momentum, wd), so);
    echo_inputs(args, opt, j);
    return finish(j, r.status(), out, err);
  }
  const RadiusResult r = args.has("weight-decay") ? weight_decay_spectral_radius(g, lr, b, sampling, wd, so)
                                                  : spectral_radius(g, lr, b, sampling, so);
  json j = with_options(radius_json(g, r), so);
  j["weight_decay"] = wd;
  echo_inputs(args, opt, j);
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

}  // namespace sgdstab::cli
