// `sgdstab escape`: nonlinear SGD started at the minimum + epsilon delta
// (theory/montecarlo.md, section 7), beside the exact eta*(B) and rho.
#include <cmath>
#include <optional>
#include <ostream>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

// --sampling, --runs, --epsilon, --escape-steps, --seed (the problem's, seeding the runs too); lr and
// batch come later.
EscapeOptions escape_options(const Args& args) {
  if (args.has("lr") == args.has("lr-factor"))
    throw UsageError("give exactly one of --lr ETA (the runs' learning rate) or --lr-factor F (F x eta*(B))");
  EscapeOptions eo;
  eo.schedule = args.choice("sampling", Schedule::without_replacement);
  apply_cli(args, eo);  // the table's options (lib/models/escape_options.cpp): --epsilon, --runs, --escape-steps
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0, got " + std::to_string(seed));
  eo.seed = static_cast<std::uint64_t>(seed);
  if (args.has("lr-factor") && !closed_form(eo.schedule))
    throw UsageError("--lr-factor needs a closed-form scheme (not reshuffle): give --lr");
  if (const std::optional<Momentum> m = momentum_option(args)) eo.momentum = *m;
  return eo;
}

// The exact eta*(B) and rho at the runs' lr (closed-form schemes only); sets
// eo.lr from --lr or --lr-factor. Returns the status of the solves.
Status exact_answers(const Args& args, const Geometry& g, double lr_arg, EscapeOptions& eo,
                     std::optional<double>& eta_star, std::optional<double>& rho, std::ostream& err) {
  const std::optional<Sampling> closed = closed_form(eo.schedule);
  const bool mom = eo.momentum.beta > 0.0;
  if (closed) {
    if (mom) {
      const MomentumThresholdResult thr = momentum_threshold(g, eo.batch, *closed, eo.momentum);
      if (!thr.converged()) {
        err << "sgdstab: the momentum threshold did not converge: " << thr.report.message << "\n";
        return thr.status();
      }
      eta_star = thr.eta_star;
    } else {
      const ThresholdResult thr = stability_threshold(g, eo.batch, *closed);
      if (!thr.converged()) {
        err << "sgdstab: the threshold eigensolver did not converge: " << thr.report.message << "\n";
        return thr.status();
      }
      eta_star = thr.eta_star;
    }
  }
  eo.lr = args.has("lr-factor") ? lr_arg * *eta_star : lr_arg;
  if (closed) {
    const RadiusResult rr = mom ? momentum_spectral_radius(g, eo.lr, eo.batch, *closed, eo.momentum)
                                : spectral_radius(g, eo.lr, eo.batch, *closed);
    if (!rr.converged()) {
      err << "sgdstab: the spectral-radius eigensolver did not converge: " << rr.report.message << "\n";
      return rr.status();
    }
    rho = rr.rho;
  }
  return Status::converged;
}

json nullable(double x) { return std::isnan(x) ? json(nullptr) : json(x); }

void escape_fields(json& j, const EscapeOptions& eo, const EscapeReport& rep, std::optional<double> eta_star,
                   std::optional<double> rho) {
  j["lr"] = eo.lr;
  j["batch"] = eo.batch;
  j["sampling"] = to_string(eo.schedule);
  j["momentum"] = eo.momentum.beta;
  j["nesterov"] = eo.momentum.nesterov;
  j["eta_star"] = eta_star ? json(*eta_star) : json(nullptr);
  j["lr_over_eta_star"] = eta_star ? json(eo.lr / *eta_star) : json(nullptr);
  j["rho"] = rho ? json(*rho) : json(nullptr);
  j["log_rho"] = rho && *rho > 0.0 ? json(std::log(*rho)) : json(nullptr);
  j["runs"] = rep.runs;
  j["escaped"] = rep.escaped;
  j["converged"] = rep.returned;
  j["undecided"] = rep.undecided;
  j["escape_fraction"] = rep.escape_fraction;
  j["escape_ci_low"] = rep.ci_low;
  j["escape_ci_high"] = rep.ci_high;
  j["median_escape_step"] = nullable(rep.median_escape_step);
  j["growth_rate"] = nullable(rep.growth_rate);
  j["epsilon"] = eo.epsilon;
  j["escape_steps"] = eo.max_steps;
  j["options"] = options_json(eo);
  j["message"] = rep.report.message;
  j["note"] = "escaped: L grew past " + detail::fmt(eo.escape_factor) + " x its start; converged: L fell below " +
              detail::fmt(eo.converge_factor) + " x its start; growth_rate is the median of log(L_escape / L_0) / "
              "steps (the typical, almost-sure rate, at most log_rho)";
}

}  // namespace

int cmd_escape(const Args& args, std::ostream& out, std::ostream& err) {
  EscapeOptions eo = escape_options(args);
  const double lr_arg = args.has("lr") ? args.number("lr") : args.number("lr-factor");
  if (!(lr_arg > 0.0)) throw UsageError(std::string(args.has("lr") ? "--lr" : "--lr-factor") + " must be > 0");
  const long long batch = args.integer("batch");
  Problem p = build_problem(args);
  eo.batch = static_cast<Index>(batch);
  check_batch(eo.batch, p.data.samples(), "--batch");
  const MinimizeResult res = reach_minimum(args, p);
  json j, minimum;
  minimum_fields(minimum, p, res);
  j["minimum"] = minimum;
  if (!res.converged()) return not_a_minimum(j, out, err, res);
  const Geometry g = geometry_at_minimum(p.model, p.data.inputs, p.data.targets);
  std::optional<double> eta_star, rho;
  const Status status = exact_answers(args, g, lr_arg, eo, eta_star, rho, err);
  if (status != Status::converged) return exit_code(status);
  eo.progress = progress_reporter(args, err, "sgdstab escape: run");
  const MlpProblem problem(p.model, p.data.inputs, p.data.targets);
  escape_fields(j, eo, escape_runs(problem, p.model.parameters(), eo), eta_star, rho);
  print_result(j, out);
  return exit_code(Exit::ok);
}

}  // namespace sgdstab::cli
