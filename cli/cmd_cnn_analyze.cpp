// `sgdstab cnn analyze`: train a CNN (or load --params), then the exact
// geometry at the point reached -- eta*(B), the bounds, mu -- and the
// Hessian-vector-product cross-checks (theory/cnn.md, sections 6-8).
#include <algorithm>
#include <optional>

#include "cnn_problem.hpp"
#include "report.hpp"
#include "commands.hpp"
#include "inputs.hpp"
#include "problem.hpp"
#include "results.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

// Every option of the command, checked before any training or file is written.
struct Plan {
  bool loaded = false;  ///< --params: no training
  bool exact = true;    ///< --geometry exact (the Gram) or hvp (only the HVP estimates, for large n)
  Index probes = 20, iterations = 50;
  std::vector<Index> batches;
  double lr = 0.0;
  Index batch = 0;
  Schedule schedule = Schedule::without_replacement;
};

Plan plan_of(const Args& args, const CnnProblem& p) {
  Plan plan;
  plan.loaded = args.has("params");
  if (plan.loaded) {
    for (const char* opt : {"init-params", "checkpoint", "checkpoint-every", "alignment-log", "log-every", "max-steps"})
      if (args.has(opt)) throw UsageError(std::string("--") + opt + " does not apply with --params (no training)");
    if (args.has("lr") != args.has("batch")) throw UsageError("--lr and --batch go together (rho at that lr and B)");
  }
  const std::string geometry = args.str_or("geometry", "exact");
  if (geometry != "exact" && geometry != "hvp") throw UsageError("--geometry: expected exact or hvp, got '" + geometry + "'");
  plan.exact = geometry == "exact";
  plan.probes = args.integer_or("probes", 20);
  plan.iterations = args.integer_or("lanczos-iters", 50);
  if (plan.probes != 0 && plan.probes < 2) throw UsageError("--probes: K must be 0 (skip) or >= 2");
  if (plan.iterations < 0) throw UsageError("--lanczos-iters: K must be 0 (skip) or >= 1");
  if (!plan.exact) {
    for (const char* opt : {"batches", "save-gram"})
      if (args.has(opt)) throw UsageError(std::string("--") + opt + " needs the Gram: not with --geometry hvp");
    if (plan.probes == 0 && plan.iterations == 0)
      throw UsageError("--geometry hvp with --probes 0 and --lanczos-iters 0 computes nothing");
  }
  if (plan.exact) plan.batches = batches_option(args, p.data.samples());
  plan.lr = args.has("lr") || !plan.loaded ? args.number("lr") : 0.0;
  plan.batch = args.has("batch") || !plan.loaded ? args.integer("batch") : 0;
  if (args.has("batch")) check_batch(plan.batch, p.data.samples(), "--batch");
  plan.schedule = args.choice("sampling", Schedule::without_replacement);
  return plan;
}

// The Gram, eta*(B) with the bounds for every B, mu and mu_*, rho at (lr, B).
Status exact_geometry(const Args& args, const CnnProblem& p, const cnn::Cnn& net, const Plan& plan, json& j,
                      json& files, json& timing, std::optional<Geometry>& g) {
  auto t = Clock::now();
  cnn::GramInfo gi;
  const MatrixXd gram = net.gram(p.data.inputs, gram_options(args), &gi);
  j["gram"] = gram_json(gi, since(t), p.data.samples());
  timing["gram"] = since(t);
  save_outputs(args, net, p.data, &gram, files);
  t = Clock::now();
  g.emplace(Geometry::from_gram(gram, p.data.outputs()));
  const Sampling s = closed_form(plan.schedule).value_or(Sampling::without_replacement);
  const double mu_star = worst_case_alignment(*g).mu_star;
  const std::optional<Momentum> momentum = momentum_option(args);
  Status status = Status::converged;
  json table = json::array();
  if (momentum) {
    // Momentum SGD's curve (theory/momentum.md); the bounds are plain SGD's and are left out.
    const std::vector<MomentumThresholdResult> curve = momentum_threshold_curve(*g, plan.batches, s, *momentum);
    const json mc = momentum_curve_json(*g, curve);
    for (const MomentumThresholdResult& r : curve) status = combine(status, r.status());
    table = mc["points"];
    j["momentum"] = momentum->beta;
    j["nesterov"] = momentum->nesterov;
    j["eta_mean"] = mc["eta_mean"];
  } else {
    const std::vector<ThresholdResult> curve = threshold_curve(*g, plan.batches, s);
    status = curve_status(curve);
    for (const ThresholdResult& r : curve)
      table.push_back(bounds_json(stability_bounds(*g, r.batch, s, {}, &r, mu_star)));
  }
  j["analysis_sampling"] = to_string(s);
  j["rank"] = g->rank();
  j["lambda_max"] = g->lambda_max();
  j["hessian_frobenius"] = g->hessian_frobenius();
  j["mu_star"] = mu_star;
  const VectorXd r = residual_vector(net, p.data);
  j["mu"] = r.squaredNorm() > 0.0 ? json(alignment(gram, p.data.outputs(), r)) : json(nullptr);
  if (plan.lr > 0.0 && plan.batch >= 1 && plan.batch <= g->samples()) {
    const RadiusResult rr = momentum ? momentum_spectral_radius(*g, plan.lr, plan.batch, s, *momentum)
                                     : spectral_radius(*g, plan.lr, plan.batch, s);
    status = combine(status, rr.status());
    j["at_lr"] = {{"lr", plan.lr}, {"batch", plan.batch}, {"rho", rr.rho}, {"stable", rr.rho <= 1.0},
                  {"converged", rr.converged()}};
  }
  j["points"] = table;
  timing["curve"] = since(t);
  return status;
}

// Hutchinson's |H|_F with its interval, and whether it contains the exact value.
json hutchinson_json(const Args& args, const CnnProblem& p, const cnn::Cnn& net, Index probes,
                     const std::optional<Geometry>& g) {
  const auto seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 11;
  const cnn::HutchinsonEstimate h = cnn::hutchinson_frobenius(net, p.data.inputs, p.data.targets, probes, seed);
  const double low = std::sqrt(std::max(h.ci_low, 0.0)), high = std::sqrt(std::max(h.ci_high, 0.0));
  return {{"hessian_frobenius", std::sqrt(std::max(h.frobenius_squared, 0.0))},
          {"ci_low", low}, {"ci_high", high}, {"confidence", h.confidence}, {"probes", h.probes},
          {"contains_exact", g ? json(low <= g->hessian_frobenius() && g->hessian_frobenius() <= high) : json(nullptr)}};
}

// lambda_max by Lanczos on exact HVPs, with the interval of 2 / lambda_max.
cnn::LanczosEstimate lanczos_estimate(const Args& args, const CnnProblem& p, const cnn::Cnn& net, Index iterations,
                                      json& j) {
  cnn::LanczosOptions lo;
  lo.max_iterations = iterations;
  lo.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 13;
  const cnn::LanczosEstimate l = cnn::lanczos_lambda_max(net, p.data.inputs, p.data.targets, lo);
  j["lanczos"] = {{"lambda_max", l.lambda_max}, {"lower", l.lower}, {"upper", l.upper}, {"iterations", l.report.iterations},
                  {"converged", l.converged()}, {"status", to_string(l.status())}, {"message", l.report.message},
                  {"eta_gd_low", l.converged() && l.upper > 0.0 ? json(2.0 / l.upper) : json(nullptr)},
                  {"eta_gd_high", l.lower > 0.0 ? json(2.0 / l.lower) : json(nullptr)}};
  return l;
}

}  // namespace

int cmd_cnn_analyze(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const CnnProblem p = cnn_problem(args);
  const torch::Device device = device_option(args);
  cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
  const Plan plan = plan_of(args, p);
  json j = problem_fields(p, net, device);
  if (plan.lr > 0.0) j["lr"] = plan.lr;
  if (plan.batch > 0) j["batch"] = plan.batch;
  j["sampling"] = to_string(plan.schedule);
  json files = json::object(), timing = json::object();
  auto t = Clock::now();
  const MinimizeResult res = plan.loaded ? load_params(args, p, net)
                                         : train(args, p, net, train_options(args, plan.lr, plan.batch), files, err);
  timing["train"] = since(t);
  result_fields(j, res);
  if (plan.loaded) j["params_file"] = args.str("params");
  const auto finish = [&](int code) {
    j["files"] = files;
    j["timing"] = timing;
    j["seconds"] = since(t0);
    print_result(j, out);
    return code;
  };
  if (!res.converged() && !args.flag("allow-residual")) {
    save_outputs(args, net, p.data, nullptr, files);
    err << "sgdstab: no interpolating minimum reached (" << res.report.message << "); --allow-residual analyzes anyway\n";
    return finish(exit_code(res.status()));
  }
  std::optional<Geometry> g;
  Status status = Status::converged;
  if (plan.exact) status = exact_geometry(args, p, net, plan, j, files, timing, g);
  else save_outputs(args, net, p.data, nullptr, files);
  j["geometry"] = plan.exact ? "exact" : "hvp";
  if (plan.probes != 0) {  // cross-checks from Hessian-vector products (the route for large n)
    t = Clock::now();
    j["hutchinson"] = hutchinson_json(args, p, net, plan.probes, g);
    timing["hutchinson"] = since(t);
  }
  if (plan.iterations != 0) {
    t = Clock::now();
    const cnn::LanczosEstimate l = lanczos_estimate(args, p, net, plan.iterations, j);
    if (!plan.exact) status = combine(status, l.status());  // then it is the answer, not a cross-check
    timing["lanczos"] = since(t);
  }
  if (status != Status::converged) err << "sgdstab: an eigensolver did not converge (" << to_string(status) << ")\n";
  return finish(exit_code(status));
}

}  // namespace sgdstab::cli
