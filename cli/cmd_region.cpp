// `sgdstab region`: eta*(B) for every scheme and batch size from one shared
// subspace (theory/region.md), the marks' verdicts, and the picture.
#include <ostream>
#include <sstream>

#include "commands.hpp"
#include "inputs.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

struct Mark {
  double lr = 0.0;
  Index batch = 0;
};

// --sampling S[,S...] (default all three schemes).
std::vector<Sampling> schemes_option(const Args& args) {
  if (!args.has("sampling")) return {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli};
  std::vector<Sampling> out;
  std::stringstream ss(args.str("sampling"));
  std::string tok;
  while (std::getline(ss, tok, ',')) out.push_back(parse<Sampling>(tok));
  if (out.empty()) throw UsageError("--sampling: empty list");
  return out;
}

// Every --mark LR,B (repeatable).
std::vector<Mark> marks_option(const Args& args) {
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

// rho(T) at each mark for each scheme: {lr, batch, sampling, stable, rho, status}.
json mark_rows(const Geometry& g, const StabilityRegion& region, const std::vector<Mark>& marks,
               const SolverOptions& so, std::vector<RegionMark>& drawn, Status& status) {
  json rows = json::array();
  for (const Mark& m : marks)
    for (std::size_t k = 0; k < region.curves.size(); ++k) {
      const RadiusResult r = spectral_radius(g, m.lr, m.batch, region.curves[k].sampling, so);
      status = combine(status, r.status());
      json row;
      row["lr"] = m.lr;
      row["batch"] = m.batch;
      row["sampling"] = to_string(region.curves[k].sampling);
      row["stable"] = r.rho <= 1.0;
      row["rho"] = r.rho;
      row["status"] = to_string(r.status());
      rows.push_back(row);
      drawn.push_back({m.lr, static_cast<double>(m.batch), r.rho <= 1.0, k});
    }
  return rows;
}

// The bounds of `sgdstab bounds` at every point (given eta* and mu_*), for the picture.
std::vector<std::vector<RegionBound>> bound_rows(const Geometry& g, const StabilityRegion& region,
                                                 const SolverOptions& so) {
  const double mu_star = worst_case_alignment(g).mu_star;
  std::vector<std::vector<RegionBound>> out;
  for (const RegionCurve& curve : region.curves) {
    std::vector<RegionBound> row;
    for (const RegionPoint& p : curve.points) {
      ThresholdResult known;
      known.batch = p.batch;
      known.sampling = curve.sampling;
      known.eta_star = p.eta_star;
      known.report.status = p.status;
      const StabilityBounds b = stability_bounds(g, p.batch, curve.sampling, so, &known, mu_star);
      double necessary = std::min({b.eta_gd, b.eta_necessary_rank1, b.eta_necessary_trace});
      if (b.eta_alignment) necessary = std::min(necessary, *b.eta_alignment);
      if (b.eta_trace_b1) necessary = std::min(necessary, *b.eta_trace_b1);
      row.push_back({static_cast<double>(p.batch), b.eta_sufficient, necessary});
    }
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace

void write_region_plot(const std::string& path, const Geometry& g, const StabilityRegion& region,
                       const std::vector<RegionMark>& marks, const SolverOptions& so) {
  write_text(path, region_svg(region, bound_rows(g, region, so), marks,
                              "Stability region: n = " + std::to_string(g.samples()) + ", C = " +
                                  std::to_string(g.outputs()) + ", rank " + std::to_string(g.rank())));
}

int cmd_region(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Sampling> schemes = schemes_option(args);
  const std::vector<Mark> marks = marks_option(args);
  const SolverOptions so = solver_options(args);
  const Geometry g = load_geometry(args);
  const std::vector<Index> batches = batches_option(args, g.samples());
  for (const Mark& m : marks) check_batch(m.batch, g.samples(), "--mark");
  const StabilityRegion region = stability_region(g, schemes, batches, so);
  json j = region_json(region);
  Status status = region.status;
  std::vector<RegionMark> drawn;
  if (!marks.empty()) j["marks"] = mark_rows(g, region, marks, so, drawn, status);
  if (args.has("plot")) {
    write_region_plot(args.str("plot"), g, region, drawn, so);
    j["plot"] = args.str("plot");
  }
  j["seconds"] = seconds_since(t0);
  return finish(j, status, out, err);
}

}  // namespace sgdstab::cli
