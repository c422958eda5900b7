// `sgdstab analyze`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_analyze(const Args& args, std::ostream& out, std::ostream& err) {
  // Every option is parsed before the (expensive) minimization.
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const ReductionOptions ro = reduction_options(args);
  const std::optional<Momentum> momentum = momentum_option(args);
  auto t0 = std::chrono::steady_clock::now();
  Problem p = build_problem(args);
  const std::vector<Index> batches = batches_option(args, p.data.samples());  // before the minimization
  const MinimizeResult res = reach_minimum(args, p);
  json timing;
  timing["minimum_s"] = seconds_since(t0);
  json j, minimum;
  minimum_fields(minimum, p, res);
  j["minimum"] = minimum;
  MinimumCheck check;
  check.residual_tolerance = args.number_or("residual-tol", 1e-10);
  check.allow_nonzero_residual = args.flag("allow-residual");
  if (!res.converged() && !check.allow_nonzero_residual) {
    save_requested(args, p, j["minimum"]);
    return not_a_minimum(j, out, err, res);
  }
  t0 = std::chrono::steady_clock::now();
  const Geometry g = geometry_at_minimum(p.model, p.data.inputs, p.data.targets, check, ro);
  timing["geometry_s"] = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  if (momentum) {
    // Momentum SGD's curve (theory/momentum.md); the bounds of Wu, Wang & Su
    // are plain SGD's and are left out.
    const std::vector<MomentumThresholdResult> curve = momentum_threshold_curve(g, batches, sampling, *momentum, so);
    j["stability"] = momentum_curve_json(g, curve);
    j["stability"]["params"] = p.model.num_parameters();
    timing["curve_s"] = seconds_since(t0);
    j["timing"] = timing;
    save_requested(args, p, j["minimum"]);
    Status status = Status::converged;
    for (const MomentumThresholdResult& r : curve) status = combine(status, r.status());
    return finish(j, status, out, err);
  }
  const std::vector<ThresholdResult> curve = threshold_curve(g, batches, sampling, so);
  j["stability"] = curve_json(g, curve);
  j["stability"]["params"] = p.model.num_parameters();
  timing["curve_s"] = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const double mu_star = worst_case_alignment(g).mu_star;
  json table = json::array();
  for (const ThresholdResult& known : curve)
    table.push_back(bounds_json(stability_bounds(g, known.batch, sampling, so, &known, mu_star)));
  j["bounds"] = table;
  timing["bounds_s"] = seconds_since(t0);
  j["timing"] = timing;
  save_requested(args, p, j["minimum"]);
  return finish(j, curve_status(curve), out, err);
}

}  // namespace sgdstab::cli
