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
  const Geometry g = load_geometry(args);
  const double wd = weight_decay_option(args);
  if (const std::optional<Momentum> m = momentum_option(args)) {
    const auto curve = momentum_threshold_curve(g, batches_option(args, g.samples()), sampling, *m, so);
    Status status = Status::converged;
    for (const auto& r : curve) status = combine(status, r.status());
    return finish(with_options(momentum_curve_json(g, curve), so), status, out, err);
  }
  const std::vector<Index> batches = batches_option(args, g.samples());
  const std::vector<ThresholdResult> curve = args.has("weight-decay")
                                                 ? weight_decay_threshold_curve(g, batches, sampling, wd, so)
                                                 : threshold_curve(g, batches, sampling, so);
  return finish(with_options(curve_json(g, curve, wd), so), curve_status(curve), out, err);
}

}  // namespace sgdstab::cli
