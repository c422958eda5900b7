// `sgdstab band`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_band(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  BandOptions o;
  apply_cli(args, o);  // --band-tol, --top-vectors, --band-steps
  const Geometry g = load_geometry(args);
  const BandResult b = stability_band(g, batch_of(args, g), sampling, o);
  return finish(with_options(band_json(g, b), o), b.status(), out, err);
}

}  // namespace sgdstab::cli
