// `sgdstab region`: eta*(B) for every scheme and batch size from one shared
// subspace (theory/region.md), the marks' verdicts, and the picture.
#include <algorithm>
#include <cstdint>
#include <new>
#include <optional>
#include <ostream>
#include <sstream>
#include <utility>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/sgdstab.hpp"
#include "solvers/band_detail.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab::cli {

// --sampling S[,S...] (default all three schemes).
std::vector<Sampling> region_schemes_option(const Args& args) {
  if (!args.has("sampling")) return {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli};
  std::vector<Sampling> out;
  std::stringstream ss(args.str("sampling"));
  std::string tok;
  while (std::getline(ss, tok, ',')) out.push_back(parse<Sampling>(tok));
  if (out.empty()) throw UsageError("--sampling: empty list");
  return out;
}

// Every --mark LR,B (repeatable).
std::vector<Mark> region_marks_option(const Args& args) {
  std::vector<Mark> out;
  for (const std::string& text : args.all("mark")) {
    const std::size_t comma = text.find(',');
    if (comma == std::string::npos || text.find(',', comma + 1) != std::string::npos)
      throw UsageError("--mark: expected LR,B (a learning rate and a batch size), got '" + text + "'");
    Mark m;
    m.lr = parse_number(text.substr(0, comma), "--mark LR");
    m.batch = static_cast<Index>(parse_integer(text.substr(comma + 1), "--mark B"));
    if (!(m.lr > 0)) throw UsageError("--mark: the learning rate must be > 0, got '" + text + "'");
    out.push_back(m);
  }
  return out;
}

namespace {

// --engine auto|exact|band and the reason (theory/band.md, section 7). The
// budget is a rank, not a time: the choice must not depend on the machine.
// auto takes the band when the rank exceeds --exact-max-rank (default 4096:
// one clustered threshold at nC = 4096 took 75-85 s on the 2-core CI
// machine, and the cost grows like r^3) or when the exact region's smallest
// footprint (exact_region_min_bytes: the operator's scratch, the
// single-precision factor, 4 subspace vectors) exceeds the memory available;
// with weight decay always the exact engine (the band has none). Momentum
// has its band (theory/band.md, section 6).
struct Engine {
  bool band = false;
  std::string reason;
};

// An engine named by --engine does not run the other, whose options would
// be dropped without a word: they are refused by name, before the geometry
// is loaded (under auto each applies where its engine runs). --memory-limit
// is the reduction's too, so it stays.
void check_engine_options(const Args& args) {
  const std::string engine = args.str_or("engine", "auto");
  if (engine != "auto" && engine != "exact" && engine != "band")
    throw UsageError("--engine: expected auto, exact or band, got '" + engine + "'");
  if (engine == "band")
    for (const OptionField<SolverOptions>& f : option_table<SolverOptions>())
      if (!f.cli.empty() && f.cli != "memory-limit" && args.has(f.cli))
        throw UsageError("--" + f.cli + ": an option of the exact engine, which --engine band does not run (the "
                         "band's options are --band-tol, --band-subspace, --band-lanczos, --band-delta, --seed, ...)");
  if (engine == "exact") {
    std::vector<std::string> band = {"seed"};
    for (const OptionField<BandOptions>& f : option_table<BandOptions>())
      if (!f.cli.empty()) band.push_back(f.cli);
    for (const std::string& name : band)
      if (args.has(name))
        throw UsageError("--" + name + ": an option of the band engine, which --engine exact does not run (the "
                         "exact engine's options are --tol, --method, --ncv, --max-restarts, --precision, ...)");
  }
}

// exact_only: what rules the band out ("weight decay"), or empty.
// The --engine value was checked by check_engine_options.
Engine engine_choice(const Args& args, const Geometry& g, const SolverOptions& so, const std::string& exact_only) {
  const std::string engine = args.str_or("engine", "auto");
  const long long max_rank = args.integer_or("exact-max-rank", 4096);
  if (max_rank < 1) throw UsageError("--exact-max-rank: expected an integer >= 1, got " + std::to_string(max_rank));
  if (engine == "exact") return {false, "--engine exact"};
  if (!exact_only.empty()) {
    if (engine == "band")
      throw UsageError("--engine band: the band has no " + exact_only +
                       " (theory/band.md, section 7); drop --weight-decay or use --engine exact");
    return {false, exact_only + ": the band has none, so the exact engine runs"};
  }
  if (engine == "band") return {true, "--engine band"};
  const double exact_bytes = exact_region_min_bytes(g, so);
  const double limit = memory_limit_option(args) > 0 ? memory_limit_option(args)
                                                     : static_cast<double>(available_memory_bytes());
  if (g.rank() > max_rank)
    return {true, "rank " + std::to_string(g.rank()) + " > --exact-max-rank " + std::to_string(max_rank)};
  if (limit > 0 && exact_bytes > limit)
    return {true, "the exact region needs at least " + format_bytes(exact_bytes) + ", more than the " +
                      format_bytes(limit) + " available"};
  return {false, "rank " + std::to_string(g.rank()) + " <= --exact-max-rank " + std::to_string(max_rank)};
}

// The verdict of (lr, B) against a band: stable below eta_low (as sure as
// the lower side's kind), unstable above eta_high, undecided between;
// "stable" is true, false or null (undecided), as the exact region's mark
// rows have it.
BandMark::Verdict band_verdict(double lr, const BandResult& b) {
  return lr < b.eta_low ? BandMark::Verdict::stable
                        : (lr > b.eta_high ? BandMark::Verdict::unstable : BandMark::Verdict::undecided);
}

json band_mark(const Mark& m, const BandResult& b) {
  json q;
  q["lr"] = m.lr;
  q["batch"] = m.batch;
  q["sampling"] = to_string(b.sampling);
  q["eta_low"] = b.eta_low;
  q["eta_high"] = b.eta_high;
  q["eta_low_kind"] = b.eta_low_kind;
  const BandMark::Verdict v = band_verdict(m.lr, b);
  const bool below = v == BandMark::Verdict::stable, above = v == BandMark::Verdict::unstable;
  q["verdict"] = below ? "stable" : (above ? "unstable" : "undecided");
  q["stable"] = below ? json(true) : (above ? json(false) : json(nullptr));
  q["status"] = to_string(b.status());
  return q;
}

// The band at batch size b among those stability_bands computed (b is one of them).
const BandResult& band_at(const std::vector<BandResult>& bands, Index b) {
  return *std::find_if(bands.begin(), bands.end(), [&](const BandResult& r) { return r.batch == b; });
}

// The region by bands from products of the Gram's reduced factor: one
// stability_band_region call over the schemes and the requested batch sizes
// and the marks' (shared Krylov subspace and per-sample Grams); curves list the
// requested ones, marks come mark by mark, then scheme by scheme, as in the
// exact region.
std::pair<json, Status> band_region(const Args& args, const Geometry& g, const std::vector<Sampling>& schemes,
                                    const std::vector<Index>& batches, const std::vector<Mark>& marks,
                                    const std::string& reason, const Momentum& momentum) {
  BandOptions o;
  apply_cli(args, o);  // --band-tol, --top-vectors, --band-steps, --band-subspace, --band-lanczos, --band-delta
  o.seed = seed_option(args, o.seed);
  o.momentum = momentum.beta;  // 0: plain SGD (theory/band.md, section 6)
  o.nesterov = momentum.nesterov && momentum.beta > 0.0;
  std::vector<Index> all = batches;
  for (const Mark& m : marks) all.push_back(m.batch);
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  const JacobianModel model = JacobianModel::from_geometry(g);
  json j;
  j["samples"] = g.samples();
  j["outputs"] = g.outputs();
  j["rank"] = g.rank();
  j["lambda_max"] = g.lambda_max();
  j["eta_gd"] = 2.0 / g.lambda_max();
  j["momentum"] = o.momentum;
  j["nesterov"] = o.nesterov;
  // The full-batch limit (2 / lambda_max without momentum), above every eta_high.
  const double limit = detail::mean_limit(Momentum{o.momentum, o.nesterov}, g.lambda_max());
  if (o.momentum > 0.0) j["eta_mean"] = limit;  // as in the exact momentum region
  j["weight_decay"] = 0.0;
  j["engine"] = "band";
  j["engine_reason"] = reason;
  j["matrix_free"] = true;
  Status status = Status::converged;
  json curves = json::array();
  // One call for every scheme: the Krylov subspace of H and the per-sample
  // Grams are made once (theory/band.md, section 7).
  const std::vector<std::vector<BandResult>> per_scheme =
      detail::band_region_known_top(model, schemes, all, o, g.lambda_max());  // lambda_max(H) known: the Gram's
  std::vector<BandCurve> drawn;
  for (std::size_t k = 0; k < schemes.size(); ++k) {
    const Sampling s = schemes[k];
    const std::vector<BandResult>& bands = per_scheme[k];
    json pts = json::array();
    drawn.push_back({s, {}});
    for (const Index b : batches) {
      drawn.back().points.push_back(band_at(bands, b));
      json q = band_json(model, band_at(bands, b));
      q.erase("samples");
      q.erase("outputs");
      q.erase("params");
      q.erase("sampling");
      pts.push_back(q);
    }
    for (const BandResult& b : bands) status = combine(status, b.status());
    curves.push_back({{"sampling", to_string(s)}, {"points", pts}});
  }
  j["curves"] = curves;
  std::vector<BandMark> drawn_marks;
  if (!marks.empty()) {
    json rows = json::array();
    for (const Mark& m : marks)
      for (std::size_t k = 0; k < per_scheme.size(); ++k) {
        const BandResult& b = band_at(per_scheme[k], m.batch);
        rows.push_back(band_mark(m, b));
        drawn_marks.push_back({m.lr, static_cast<double>(m.batch), band_verdict(m.lr, b), k});
      }
    j["marks"] = rows;
  }
  if (args.has("plot")) {
    const std::string plot = args.str("plot");
    const std::string label = o.momentum == 0.0 ? "2/lambda_max"
                              : o.nesterov      ? "2(1+beta)/((1+2beta) lambda_max)"
                                                : "2(1+beta)/lambda_max";
    write_text(plot, band_region_svg(g.samples(), limit, drawn, drawn_marks,
                                     "Stability region (bands): n = " + std::to_string(g.samples()) + ", C = " +
                                         std::to_string(g.outputs()) + ", rank " + std::to_string(g.rank()) +
                                         (o.momentum > 0.0 ? ", momentum " + detail::fmt(o.momentum) +
                                                                 (o.nesterov ? " (Nesterov)" : "")
                                                           : std::string()),
                                     label));
    j["plot"] = plot;
  }
  // Every result carries the whole call's products (one call for every scheme).
  j["products"] = per_scheme.front().front().products;
  j["converged"] = status == Status::converged;
  j["status"] = to_string(status);
  j["message"] = status == Status::converged ? "converged" : "a band did not converge (see its point's message)";
  j["loss_convention"] = kLossConvention;
  return {with_options(j, o), status};
}

}  // namespace

int cmd_region(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = std::chrono::steady_clock::now();
  const double weight_decay = weight_decay_option(args);
  const OptimizerSetting opt = optimizer_option(args);
  // Momentum's region (and Adam's or RMSProp's L2 decay, solved as momentum's) takes every scheme.
  const bool heavy = (opt.momentum.has_value() && opt.momentum->beta > 0.0) || opt.l2_adaptive;
  // With weight decay the default schemes of plain SGD are without and with
  // replacement (one shared family; Bernoulli's points: `curve --sampling
  // bernoulli`).
  const std::vector<Sampling> schemes =
      weight_decay > 0.0 && !args.has("sampling") && !heavy
          ? std::vector<Sampling>{Sampling::without_replacement, Sampling::with_replacement}
          : region_schemes_option(args);
  const std::vector<Mark> marks = region_marks_option(args);
  const SolverOptions so = solver_options(args);
  if (opt.adam && !(opt.beta1() > 0.0))
    throw UsageError("--optimizer " + opt.name + " --momentum 0 is RMSProp: use --optimizer rmsprop in region");
  const std::optional<Momentum> momentum = opt.momentum;
  if (weight_decay > 0.0 && !heavy)
    for (Sampling s : schemes)
      if (s == Sampling::bernoulli)
        throw UsageError("--weight-decay: the region covers without and with replacement (one shared family); for "
                         "Bernoulli sampling use `curve --sampling bernoulli --weight-decay` (theory/weight_decay.md)");
  check_engine_options(args);
  // The adaptive optimizers have the exact engine only (the band is SGD's, theory/band.md, section 7).
  const bool adaptive = opt.adam || opt.l2_adaptive;
  if (adaptive && args.str_or("engine", "auto") == "band")
    throw UsageError("--engine band: the band is SGD's, with or without momentum, not --optimizer " + opt.name +
                     (opt.l2_adaptive ? " --weight-decay" : "") + "'s (theory/band.md, section 7); use --engine exact");
  auto exact_only = [&](RegionReport rep) {
    rep.j["engine"] = "exact";
    rep.j["engine_reason"] = "--optimizer " + opt.name + ": the band is SGD's only, so the exact engine runs";
    rep.j["seconds"] = seconds_since(t0);
    echo_inputs(args, opt, rep.j);
    return finish(rep.j, rep.status, out, err);
  };
  if (opt.l2_adaptive) {  // Adam's or RMSProp's own L2 decay (theory/adaptive.md, section 6)
    const AdaptiveL2Input in = adaptive_l2_input(args);
    const std::vector<Index> batches = batches_option(args, in.geometry.samples());
    for (const Mark& m : marks) check_batch(m.batch, in.geometry.samples(), "--mark");
    return exact_only(adam_l2_region_report(in, schemes, batches, marks, args.str_or("plot", ""), so, opt.beta1(),
                                            weight_decay));
  }
  const Geometry g = load_geometry(args);
  const std::vector<Index> batches = batches_option(args, g.samples());
  for (const Mark& m : marks) check_batch(m.batch, g.samples(), "--mark");
  if (opt.adam)  // Adam / AdamW: the momentum region in Adam's lr (theory/adaptive.md)
    return exact_only(adam_region_report(g, schemes, batches, marks, args.str_or("plot", ""), so, opt.beta1(),
                                         opt.decoupled_weight_decay ? weight_decay : 0.0));
  const Engine engine = engine_choice(args, g, so, weight_decay > 0.0 ? "weight decay" : "");
  const Momentum band_momentum = heavy ? *momentum : Momentum{};
  if (engine.band) {
    auto [j, status] = band_region(args, g, schemes, batches, marks, engine.reason, band_momentum);
    j["seconds"] = seconds_since(t0);
    echo_inputs(args, opt, j);
    return finish(j, status, out, err);
  }
  const bool may_fall_back = args.str_or("engine", "auto") == "auto" && weight_decay == 0.0;
  std::optional<RegionReport> exact;
  std::string fallback;  // why the exact attempt failed, when auto falls back
  try {
    exact = region_report(g, schemes, batches, marks, args.str_or("plot", ""), so, momentum.value_or(Momentum{}),
                          weight_decay);
  } catch (const resource_error& e) {
    if (!may_fall_back) throw;
    fallback = e.what();
  } catch (const std::bad_alloc& e) {
    if (!may_fall_back) throw;
    fallback = std::string("an allocation failed (") + e.what() + ")";
  }
  if (!exact) {
    // engine_choice's budget is what the solver checks first; an allocation
    // that fails later all the same (memory taken by others meanwhile, or a
    // limit the budget cannot see: --memory-limit above a ulimit) makes
    // auto fall back to the band and say why. The exact attempt's memory is
    // freed by then. Tested by tests/memory_limit_test.sh.
    err << "sgdstab region: the exact region does not fit (" << fallback << "); running the band instead\n";
    auto [j, status] = band_region(args, g, schemes, batches, marks,
                                   "the exact region ran out of memory: " + fallback, band_momentum);
    j["seconds"] = seconds_since(t0);
    echo_inputs(args, opt, j);
    return finish(j, status, out, err);
  }
  RegionReport& rep = *exact;
  rep.j["engine"] = "exact";
  rep.j["engine_reason"] = engine.reason;
  rep.j["seconds"] = seconds_since(t0);
  echo_inputs(args, opt, rep.j);
  return finish(rep.j, rep.status, out, err);
}

}  // namespace sgdstab::cli
