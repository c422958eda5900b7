// `sgdstab bounds`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_bounds(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const Geometry g = load_geometry(args);
  const StabilityBounds b = stability_bounds(g, batch_of(args, g), sampling, so);
  json j = with_options(bounds_report_json(g, b), so);
  echo_input_transforms(args, j);
  return finish(j, b.status(), out, err);
}

}  // namespace sgdstab::cli
