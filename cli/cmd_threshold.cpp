// `sgdstab threshold`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_threshold(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  const SolverOptions so = solver_options(args);
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const ThresholdResult r = stability_threshold(g, b, sampling, so);
  const json j = threshold_json(g, r);
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

}  // namespace sgdstab::cli
