// `sgdstab radius`.
#include <ostream>

#include "check.hpp"
#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_radius(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  const SolverOptions so = solver_options(args);
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const RadiusResult r = spectral_radius(g, lr, b, sampling, so);
  const json j = radius_json(g, r);
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

}  // namespace sgdstab::cli
