// `sgdstab curve`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_curve(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const Geometry g = load_geometry(args);
  const std::vector<ThresholdResult> curve = threshold_curve(g, batches_option(args, g.samples()), sampling, so);
  return finish(curve_json(g, curve), curve_status(curve), out, err);
}

}  // namespace sgdstab::cli
