// `sgdstab montecarlo`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

// The exit code of a cross-check, with its reason on stderr. Reshuffling has
// no exact answer: its verdict is inconclusive by construction, and only the
// status of its estimate decides the exit code.
int cross_check_exit(const CrossCheckReport& rep, std::ostream& err) {
  const int code = rep.rho && rep.converged() ? exit_code(rep.verdict) : exit_code(rep.status());
  if (code == exit_code(Exit::disagree))
    err << "sgdstab: the Monte Carlo estimates disagree with the exact answer: " << rep.reason << "\n";
  else if (code != exit_code(Exit::ok))
    err << "sgdstab: " << (rep.radius.converged() ? rep.reason : rep.radius.report.message) << "\n";
  return code;
}

}  // namespace

int cmd_montecarlo(const Args& args, std::ostream& out, std::ostream& err) {
  CrossCheckOptions o;
  o.schedule = args.choice("sampling", Schedule::without_replacement);
  o.lr = args.number("lr");
  apply_cli(args, o);  // the table's options (lib/simulation/cross_check_options.cpp): --steps, --trajectories, ...
  o.weight_decay = weight_decay_option(args);
  const OptimizerSetting opt = optimizer_option(args);
  if (opt.l2_adaptive && o.weight_decay > 0.0) {
    // Adam's or RMSProp's own L2 decay: the whole 2p state of phi = P^{1/2} theta (theory/adaptive.md,
    // section 6), from the Jacobian and P; lr and eta_star in the optimizer's lr. (Decay 0: the path below.)
    const AdaptiveL2Input in = adaptive_l2_input(args);
    o.batch = batch_of(args, in.geometry);
    o.progress = progress_reporter(args, err, "sgdstab montecarlo: step");
    const CrossCheckReport rep = adam_l2_cross_check(in.jacobian, in.outputs, in.preconditioner, opt.beta1(), o);
    json j = adam_l2_cross_check_json(o, rep, opt.beta1());
    echo_inputs(args, opt, j);
    print_result(j, out);
    return cross_check_exit(rep, err);
  }
  o.momentum = opt.momentum.value_or(Momentum{});
  // Adam runs as heavy-ball at lr (1 - beta1) on J P^{-1/2} (theory/adaptive.md, eq. 3); the JSON is in Adam's lr.
  const double adam_lr = o.lr;
  if (opt.adam) o.lr = adam_heavy_ball_lr(o.lr, opt.beta1());
  // AdamW: theta <- (1 - lr wd) theta is (1 - lr_hb mu) with mu = wd / (1 - beta1) (theory/adaptive.md, section 5).
  const double adamw_wd = opt.decoupled_weight_decay ? o.weight_decay : 0.0;
  if (opt.decoupled_weight_decay) {
    o.decoupled_weight_decay = o.weight_decay / (1.0 - opt.beta1());
    o.weight_decay = 0.0;
  }
  const Geometry g = load_geometry(args);
  o.batch = batch_of(args, g);
  o.progress = progress_reporter(args, err, "sgdstab montecarlo: step");
  const CrossCheckReport rep = cross_check(g, o);
  json j = cross_check_json(o, rep);
  if (opt.adam) {
    j["lr"] = adam_lr;
    j["heavy_ball_lr"] = o.lr;
    if (rep.eta_star) j["eta_star"] = *rep.eta_star / (1.0 - opt.beta1());
  }
  if (opt.decoupled_weight_decay) {  // in AdamW's units, as the other commands report it
    j["weight_decay"] = adamw_wd;
    j.erase("decoupled_weight_decay");
    j["heavy_ball_decoupled_weight_decay"] = o.decoupled_weight_decay;  // mu at heavy_ball_lr
    j["weight_decay_decoupled"] = true;
  }
  echo_inputs(args, opt, j);
  print_result(j, out);
  return cross_check_exit(rep, err);
}

}  // namespace sgdstab::cli
