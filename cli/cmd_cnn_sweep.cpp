// `sgdstab cnn sweep`: the seed paper's experiment. One training run per
// (lr, B) from the same initialization; at each minimum reached |H|_F,
// lambda_max, eta*(B), mu and mu_*; sweep.csv rewritten after every run and
// the SVG of |H|_F against sqrt(B)/lr (theory/cnn.md, section 9).
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "cnn_problem.hpp"
#include "report.hpp"
#include "commands.hpp"
#include "plot.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

// The shortest text that reads back to the same double.
std::string shortest(double x) {
  char buf[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

std::string csv_field(const json& v) {
  if (v.is_number_float()) return shortest(v.get<double>());
  if (v.is_null()) return "nan";
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  if (v.is_string()) {
    std::string s = "\"";
    for (char ch : v.get<std::string>()) s += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return s + "\"";
  }
  return v.dump();
}

const std::vector<std::string> kSweepColumns = {
    "lr", "batch", "sampling", "converged", "steps", "loss", "max_residual", "hessian_frobenius", "lambda_max",
    "eta_star", "lr_over_eta_star", "mu", "mu_star", "gamma", "eta_alignment", "sqrt_batch_over_lr", "seconds",
    "params_file", "message", "mu_min_training", "alignment_log"};

std::string sweep_csv(const json& rows) {
  std::string s;
  for (std::size_t c = 0; c < kSweepColumns.size(); ++c) s += (c ? "," : "") + kSweepColumns[c];
  s += "\n";
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < kSweepColumns.size(); ++c)
      s += (c ? "," : "") + csv_field(row.contains(kSweepColumns[c]) ? row[kSweepColumns[c]] : json(nullptr));
    s += "\n";
  }
  return s;
}

// --lrs and --batches: positive, in range, none twice.
std::pair<std::vector<double>, std::vector<Index>> sweep_grid(const Args& args, Index samples) {
  const std::vector<double> lrs = number_list(args.str("lrs"), "--lrs");
  for (std::size_t a = 0; a < lrs.size(); ++a)
    for (std::size_t b = a + 1; b < lrs.size(); ++b)
      if (lrs[a] == lrs[b]) throw UsageError("--lrs: " + shortest(lrs[a]) + " is given twice");
  std::vector<Index> batches;
  for (long long b : args.integer_list("batches")) {
    check_batch(static_cast<Index>(b), samples, "--batches");
    if (std::find(batches.begin(), batches.end(), static_cast<Index>(b)) != batches.end())
      throw UsageError("--batches: " + std::to_string(b) + " is given twice");
    batches.push_back(static_cast<Index>(b));
  }
  return {lrs, batches};
}

std::filesystem::path output_directory(const Args& args) {
  const std::filesystem::path dir = args.str("out");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw io_error(dir.string() + ": cannot create the output directory (" + ec.message() + ")");
  return dir;
}

// The geometry at a minimum a run reached: |H|_F (also returned in
// `frobenius`), lambda_max, eta*(B), mu, mu_*.
Status minimum_geometry(const CnnProblem& p, const cnn::Cnn& net, const cnn::GramOptions& go, Schedule schedule,
                        double lr, Index b, json& row, double& frobenius) {
  const MatrixXd gram = net.gram(p.data.inputs, go);
  const Geometry g = Geometry::from_gram(gram, p.data.outputs());
  const Sampling s = closed_form(schedule).value_or(Sampling::without_replacement);
  const ThresholdResult thr = stability_threshold(g, b, s);
  const double mu_star = worst_case_alignment(g).mu_star;
  const StabilityBounds bd = stability_bounds(g, b, s, {}, &thr, mu_star);
  const VectorXd r = residual_vector(net, p.data);
  frobenius = g.hessian_frobenius();
  row["hessian_frobenius"] = frobenius;
  row["lambda_max"] = g.lambda_max();
  row["eta_star"] = thr.eta_star;
  row["lr_over_eta_star"] = lr / thr.eta_star;
  row["mu"] = r.squaredNorm() > 0.0 ? json(alignment(gram, p.data.outputs(), r)) : json(nullptr);
  row["mu_star"] = mu_star;
  row["gamma"] = bd.gamma;
  row["eta_alignment"] = bd.eta_alignment ? json(*bd.eta_alignment) : json(nullptr);
  return thr.status();
}

struct Sweep {
  const Args& args;
  const CnnProblem& p;
  std::filesystem::path dir;
  torch::Device device;
  cnn::GramOptions gram;
  Index log_every = 0;  ///< mu along each run; 0 = not logged
  Status status = Status::converged;
  std::vector<ScatterPoint> points;  ///< the minima reached, for the SVG

  // One run from the common initialization; its row of sweep.csv.
  json run(double lr, Index b) {
    const auto t = Clock::now();
    cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
    cnn::CnnTrainOptions o = train_options(args, lr, b);
    AlignmentLog log{p, gram, log_every};
    if (log_every > 0) {
      o.observe_every = log_every;
      o.observer = [&log](Index step, const cnn::Cnn& at) { log.record(step, at); };
    }
    const MinimizeResult res = cnn::train_cnn(net, p.data.inputs, p.data.targets, o);
    log.record_final(res.report.iterations, net);
    const std::string tag = "lr" + shortest(lr) + "_B" + std::to_string(b);
    const std::string name = "params_" + tag + ".npy", log_name = "alignment_" + tag + ".csv";
    if (log_every > 0) write_text((dir / log_name).string(), log.text);
    const bool finite = net.parameters().allFinite();  // a diverged run may have overflowed: nothing to save
    if (finite) write_matrix((dir / name).string(), net.parameters());
    json row = {{"lr", lr}, {"batch", b}, {"sampling", to_string(o.schedule)}, {"converged", res.converged()},
                {"steps", res.report.iterations}, {"loss", res.loss}, {"max_residual", res.max_residual},
                {"sqrt_batch_over_lr", std::sqrt(static_cast<double>(b)) / lr},
                {"params_file", finite ? json(name) : json(nullptr)}, {"message", res.report.message}};
    if (log_every > 0) {
      row["mu_min_training"] = std::isfinite(log.mu_min) ? json(log.mu_min) : json(nullptr);
      row["alignment_log"] = log_name;
    }
    if (res.converged()) try {
        double frobenius = 0.0;
        status = combine(status, minimum_geometry(p, net, gram, o.schedule, lr, b, row, frobenius));
        points.push_back({std::sqrt(static_cast<double>(b)) / lr, frobenius, "B = " + std::to_string(b)});
      } catch (const sgdstab::resource_error& e) {  // this run's geometry does not fit: say so, go on
        row["message"] = res.report.message + "; geometry not computed: " + e.what();
      }
    row["seconds"] = since(t);
    return row;
  }
};

}  // namespace

int cmd_cnn_sweep(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const CnnProblem p = cnn_problem(args);
  const auto [lrs, batches] = sweep_grid(args, p.data.samples());
  Sweep sweep{args, p, output_directory(args), device_option(args), gram_options(args),
              args.has("log-every") ? log_every_option(args) : 0};
  const std::string csv_path = (sweep.dir / "sweep.csv").string();
  const std::string svg_path = (sweep.dir / "hessian_frobenius_vs_sqrtB_over_lr.svg").string();
  json j = problem_fields(p, cnn::Cnn(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), sweep.device),
                          sweep.device);
  json rows = json::array();
  const std::size_t total = lrs.size() * batches.size();
  for (Index b : batches)
    for (double lr : lrs) {
      if (!args.flag("quiet"))
        err << "sgdstab cnn sweep: run " << rows.size() + 1 << "/" << total << ": lr " << lr << ", B " << b << "\n";
      rows.push_back(sweep.run(lr, b));
      write_text(csv_path, sweep_csv(rows));  // rewritten whole after every run
    }
  write_text(svg_path, scatter_svg(sweep.points, "|H|_F at the minima SGD reached: " + args.str_or("data", "synthetic") +
                                                     ", n = " + std::to_string(p.data.samples()),
                                   "sqrt(B) / lr", "|H|_F"));
  j["lrs"] = lrs;
  j["batches"] = batches;
  const cnn::CnnTrainOptions every_run = train_options(args, lrs.front(), batches.front());
  j["residual_tolerance"] = every_run.residual_tolerance;
  j["max_steps"] = every_run.max_steps;
  j["runs"] = rows;
  j["files"] = {{"csv", csv_path}, {"svg", svg_path}, {"directory", sweep.dir.string()}};
  j["seconds"] = since(t0);
  print_result(j, out);
  if (sweep.status != Status::converged)
    err << "sgdstab: an eigensolver did not converge (" << to_string(sweep.status) << ")\n";
  return exit_code(sweep.status);
}

}  // namespace sgdstab::cli
