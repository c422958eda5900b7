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
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const double wd = weight_decay_option(args);
  if (const std::optional<Momentum> m = momentum_option(args)) {
    if (args.has("direction")) throw UsageError("--direction is not available with --momentum");
    const RadiusResult r = momentum_spectral_radius(g, lr, b, sampling, *m, so);
    return finish(with_options(momentum_radius_json(g, r, *m), so), r.status(), out, err);
  }
  const RadiusResult r = args.has("weight-decay") ? weight_decay_spectral_radius(g, lr, b, sampling, wd, so)
                                                  : spectral_radius(g, lr, b, sampling, so);
  json j = with_options(radius_json(g, r), so);
  j["weight_decay"] = wd;
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

}  // namespace sgdstab::cli
