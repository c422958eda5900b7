// `sgdstab band`.
#include <cstdint>
#include <optional>
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"
#include "solvers/band_detail.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab::cli {

int cmd_band(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  BandOptions o;
  apply_cli(args, o);  // --band-tol, --top-vectors, --band-steps, --band-subspace, --band-lanczos, --band-delta
  o.seed = seed_option(args, o.seed);  // else BandOptions' default, as in C++ and Python
  if (const std::optional<Momentum> m = momentum_option(args)) {  // --momentum BETA [--nesterov]
    o.momentum = m->beta;
    o.nesterov = m->nesterov && m->beta > 0.0;  // at beta = 0 plain SGD, as everywhere
  }
  // With momentum always from products (theory/band.md, section 6).
  if (args.flag("matrix-free") || o.momentum > 0.0) {
    // A Jacobian file is used as it is (products J V, J^T U); a Gram through
    // its reduced factor (a Jacobian in r coordinates), whose lambda_max(H)
    // is then known exactly.
    const bool jacobian = args.has("jacobian") && !args.has("gram");
    std::optional<Geometry> g;
    if (!jacobian) g = load_geometry(args);
    const JacobianModel model =
        jacobian ? JacobianModel(load_jacobian(args), outputs_option(args)) : JacobianModel::from_geometry(*g);
    const Index batch = static_cast<Index>(args.integer("batch"));
    check_batch(batch, model.samples(), "--batch");
    const BandResult b =
        detail::band_region_known_top(model, {sampling}, {batch}, o, g ? g->lambda_max() : 0.0).front().front();
    json j = with_options(band_json(model, b), o);
    if (o.momentum > 0.0) {  // as the momentum region's JSON has them
      j["momentum"] = o.momentum;
      j["nesterov"] = o.nesterov;
      if (g) j["eta_mean"] = detail::mean_limit(Momentum{o.momentum, o.nesterov}, g->lambda_max());
    }
    echo_input_transforms(args, j);
    return finish(j, b.status(), out, err);
  }
  const Geometry g = load_geometry(args);
  const BandResult b = stability_band(g, batch_of(args, g), sampling, o);
  json j = with_options(band_json(g, b), o);
  echo_input_transforms(args, j);
  return finish(j, b.status(), out, err);
}

}  // namespace sgdstab::cli
