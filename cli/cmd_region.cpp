// `sgdstab region`: eta*(B) for every scheme and batch size from one shared
// subspace (theory/region.md), the marks' verdicts, and the picture.
#include <ostream>
#include <sstream>

#include "commands.hpp"
#include "inputs.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

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

int cmd_region(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Sampling> schemes = region_schemes_option(args);
  const std::vector<Mark> marks = region_marks_option(args);
  const SolverOptions so = solver_options(args);
  const Momentum momentum = momentum_option(args).value_or(Momentum{});
  const Geometry g = load_geometry(args);
  const std::vector<Index> batches = batches_option(args, g.samples());
  for (const Mark& m : marks) check_batch(m.batch, g.samples(), "--mark");
  RegionReport rep = region_report(g, schemes, batches, marks, args.str_or("plot", ""), so, momentum);
  rep.j["seconds"] = seconds_since(t0);
  return finish(rep.j, rep.status, out, err);
}

}  // namespace sgdstab::cli
