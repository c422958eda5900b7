#include "commands.hpp"

#include <cmath>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "check.hpp"
#include "args.hpp"
#include "problem.hpp"
#include <chrono>
#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;

namespace {

const char* kUsageText = R"(usage: sgdstab COMMAND [options]

Exact mean-square linear stability of SGD at an interpolating minimum of the
square loss (loss convention: 1/2 |f - y|^2, mean over samples).

commands:
  threshold --jacobian FILE [--outputs C] --batch B [--sampling S]
  threshold --gram FILE --outputs C --batch B [--sampling S]
  radius    (--jacobian FILE | --gram FILE) [--outputs C] --batch B --lr ETA [--sampling S]
  curve     (--jacobian FILE | --gram FILE) [--outputs C] [--batches 1,2,4,...] [--sampling S]
  demo      eta*(B) of a built-in random-feature regression problem
  cnn train|analyze|sweep   (builds with LibTorch only) VGG-style CNNs, trained by SGD:
            --data synthetic|fashion-mnist|cifar10:DIR [--classes 0,1] [--per-class N] [--scaling S]
            [--arch vgg:8,16] [--hidden 64] [--sampling S] [--device auto|cpu|cuda] [--seed S]
            [--max-steps K] [--residual-tol X] [--gram-chunk N] [--gram-memory MIB] [--quiet]
    train   --lr ETA --batch B [--init-params F] [--checkpoint F [--checkpoint-every K]]
            [--alignment-log F [--log-every K]] [--save-jacobian F] [--save-gram F] [--save-params F]
    analyze (the train options, or --params F) [--batches ...] [--probes K] [--lanczos-iters K]
            [--geometry exact|hvp] [--allow-residual]   minimum, eta*(B) curve, bounds, |H|_F exact
            and Hutchinson, Lanczos lambda_max (hvp: only the HVP estimates, no Gram)
    sweep   --lrs ETA1,ETA2,... --batches B1,B2,... --out DIR [--log-every K]   one run per
            (lr, B): sweep.csv and the |H|_F vs sqrt(B)/lr plot (SVG); with --log-every, mu along
            each run (alignment_lr*_B*.csv)
  bounds    (--jacobian FILE | --gram FILE) [--outputs C] --batch B [--sampling S]
            eta*(B) beside every known bound (GD, Wu-Ma-E, Mulayoff-Michaeli, alignment)
  alignment (--jacobian FILE | --gram FILE) [--outputs C] (--residual FILE | --direction FILE)
            the alignment mu of SGD noise (residuals f_i - y_i, n*C values) or the
            linearized mu_lin(delta) (delta in R^p; needs --jacobian), and mu_*
  montecarlo (--jacobian FILE | --gram FILE) [--outputs C] --batch B --lr ETA
            [--sampling without|with|bernoulli|reshuffle] [--steps T] [--trajectories M]
            [--blocks K] [--seed S] [--quiet]   simulate linearized SGD beside the exact answer
  escape    MODEL DATA [TRAINER] --batch B (--lr ETA | --lr-factor F) [--sampling S]
            [--runs R] [--epsilon E] [--escape-steps K] [--quiet]
            nonlinear SGD from the minimum + E delta: escape fraction, rate
  minimum   MODEL DATA [TRAINER] [--save-jacobian F] [--save-gram F] [--save-params F]
  analyze   MODEL DATA [TRAINER] [--batches 1,2,4,...] [--allow-residual]
            (minimum, then the eta*(B) curve at it, one JSON report)

model (minimum, analyze):
  --widths D,M,...,C          layer widths, input to output (required)
  --model mlp|linear|rfm      rfm freezes layer 0; linear is --widths D,C (default mlp)
  --activation A[,A...]       identity|relu|tanh|erf|softplus per hidden layer (default relu)
  --bias                      layers have biases
  --frozen L[,L...]           0-based layers kept at their initialization
  --parametrization P         standard|ntk|mean-field (default standard)
  --init he|lecun             weight variance gain 2 or 1 (default he)
  --output-scale X            extra multiplier on the output layer (default 1)
  --seed S                    initialization, data and batches (default 0)
data:
  --data gaussian|teacher     Gaussian inputs, N(0,1) targets or a random teacher's outputs
         [--samples N] [--input-spectrum isotropic|power:ALPHA] [--teacher-widths D,...,C]
  --data fashion-mnist|cifar10 [--classes 0,1,2,3] [--per-class K] [--scaling unit|none|standardize|center]
         [--split train|test] [--data-dir DIR]   (Fashion-MNIST: Debian package dataset-fashion-mnist;
         CIFAR-10: the cifar-10-batches-bin directory of cifar-10-binary.tar.gz)
  --data csv:PATH|npy:PATH    table whose last C columns are the targets
  --data curvatures:A1,A2,... 1-D samples x_i = sqrt(A_i), y = 0 (use --widths 1,1)
  --data 1d:sine|abs|quadratic|step [--samples N]
trainer:
  --trainer min-norm|gauss-newton|gd|sgd   (default min-norm when only the last layer
            trains, gauss-newton otherwise) [--residual-tol X] (default 1e-10, relative to max|y|)
            [--max-iter K] (gauss-newton)  [--lr ETA --max-steps K] (gd, sgd)
            [--batch B --train-sampling S] (sgd; in `minimum` --sampling S works too, in
            `analyze` --sampling is the scheme of the analysis and the default of the trainer)

common options:
  --sampling without|with|bernoulli   mini-batch scheme (default without)
  --method automatic|dense|lanczos    eigensolver (default automatic)
  --tol X                              relative eigenvalue accuracy (default 1e-10)
  --ncv K                              Lanczos subspace dimension (default min(m, 12))
  --rank-tol X                         relative rank cut-off of the Gram spectrum
  --space automatic|parameter|sample   where the reduction is computed
  --direction FILE                     also write the top eigen-direction (r x r, reduced coordinates)

Input files: CSV (comma-separated, no header) or .npy (2-D float64/float32).
A Jacobian has n*C rows (row i*C + k = d f_k(x_i) / d theta) and p columns;
a Gram is the (n C) x (n C) matrix J J^T in the same order.
Output: one JSON object on stdout ("converged": false and "status" say when a
number is not to be trusted).
)";

const std::set<std::string> kCommon = {"jacobian", "gram", "outputs", "sampling", "method", "tol",
                                       "ncv", "rank-tol", "space", "direction"};

std::set<std::string> with_common(std::set<std::string> extra) {
  extra.insert(kCommon.begin(), kCommon.end());
  return extra;
}

Geometry load_geometry(const Args& args) {
  const bool jac = args.has("jacobian"), gram = args.has("gram");
  if (jac == gram) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
  const long long c = args.integer_or("outputs", 1);
  if (c < 1) throw UsageError("--outputs: C must be >= 1, got " + std::to_string(c));
  ReductionOptions ro;
  ro.rank_tolerance = args.number_or("rank-tol", 0.0);
  const std::string space = args.str_or("space", "automatic");
  if (space == "automatic") ro.space = Space::automatic;
  else if (space == "parameter") ro.space = Space::parameter;
  else if (space == "sample") ro.space = Space::sample;
  else throw UsageError("--space: expected automatic|parameter|sample, got '" + space + "'");
  if (jac) return Geometry::from_jacobian(read_matrix(args.str("jacobian")), c, ro);
  return Geometry::from_gram(read_matrix(args.str("gram")), c, ro);
}

SolverOptions solver_options(const Args& args) {
  SolverOptions so;
  so.method = parse_method(args.str_or("method", "automatic"));
  so.tolerance = args.number_or("tol", so.tolerance);
  so.subspace_dimension = args.integer_or("ncv", 0);
  so.want_direction = args.has("direction");
  so.validate();
  return so;
}

Index batch_of(const Args& args, const Geometry& g) {
  const Index b = static_cast<Index>(args.integer("batch"));
  check_batch(b, g.samples(), "--batch");
  return b;
}

void report_fields(json& j, const SolveReport& r) {
  j["converged"] = r.converged();
  j["status"] = to_string(r.status);
  j["matvecs"] = r.matvecs;
  j["iterations"] = r.iterations;
  j["residual"] = r.residual;
  j["method"] = to_string(r.method);
  j["message"] = r.message;
}

void geometry_fields(json& j, const Geometry& g) {
  j["samples"] = g.samples();
  j["outputs"] = g.outputs();
  j["params"] = g.params() > 0 ? json(g.params()) : json(nullptr);
  j["rank"] = g.rank();
}

void hessian_fields(json& j, const Geometry& g) {
  j["eta_gd"] = 2.0 / g.lambda_max();
  j["lambda_max"] = g.lambda_max();
  j["hessian_frobenius"] = g.hessian_frobenius();
  j["hessian_trace"] = g.hessian_trace();
}

int finish(const json& j, Status status, std::ostream& out, std::ostream& err) {
  out << j.dump(2) << "\n";
  if (status != Status::converged)
    err << "sgdstab: the eigensolver did not converge (status " << to_string(status)
        << "); the numbers above are not to be trusted\n";
  return exit_code(status);
}

void write_direction(const Args& args, const Eigen::MatrixXd& dir) {
  if (args.has("direction") && dir.size() > 0) {
    const std::string path = args.str("direction");
    write_matrix(path, dir);
  }
}

int cmd_threshold(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(with_common({"batch"}));
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  const SolverOptions so = solver_options(args);
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const ThresholdResult r = stability_threshold(g, b, sampling, so);
  json j;
  geometry_fields(j, g);
  j["batch"] = b;
  j["sampling"] = to_string(sampling);
  j["eta_star"] = r.eta_star;
  hessian_fields(j, g);
  report_fields(j, r.report);
  j["space"] = to_string(g.space());
  j["loss_convention"] = "1/2 squared error, mean over samples";
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

int cmd_radius(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(with_common({"batch", "lr"}));
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  const SolverOptions so = solver_options(args);
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const RadiusResult r = spectral_radius(g, lr, b, sampling, so);
  json j;
  j["rho"] = r.rho;
  j["lr"] = lr;
  j["batch"] = b;
  j["sampling"] = to_string(sampling);
  report_fields(j, r.report);
  geometry_fields(j, g);
  j["loss_convention"] = "1/2 squared error, mean over samples";
  write_direction(args, r.direction);
  return finish(j, r.status(), out, err);
}

int cmd_bounds(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(with_common({"batch"}));
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const Geometry g = load_geometry(args);
  const StabilityBounds b = stability_bounds(g, batch_of(args, g), sampling, so);
  json j = bounds_json(b);
  geometry_fields(j, g);
  j["loss_convention"] = "1/2 squared error, mean over samples";
  return finish(j, b.status, out, err);
}

int cmd_alignment(const Args& args, std::ostream& out, std::ostream&) {
  args.allow_only({"jacobian", "gram", "outputs", "rank-tol", "space", "residual", "direction"});
  if (args.has("residual") == args.has("direction"))
    throw UsageError("give exactly one of --residual FILE (f_i - y_i) or --direction FILE (delta in R^p)");
  const long long c = args.integer_or("outputs", 1);
  if (c < 1) throw UsageError("--outputs: C must be >= 1, got " + std::to_string(c));
  json j;
  Eigen::VectorXd r;
  Eigen::MatrixXd gram;
  if (args.has("direction")) {
    if (!args.has("jacobian")) throw UsageError("--direction needs --jacobian (delta lives in parameter space)");
    const Eigen::MatrixXd jac = read_matrix(args.str("jacobian"));
    const Eigen::MatrixXd delta = read_matrix(args.str("direction"));
    if (delta.size() != jac.cols())
      throw sgdstab::invalid_argument("--direction: delta must have p = " + std::to_string(jac.cols()) +
                                      " entries, got " + std::to_string(delta.size()));
    r = jac * Eigen::Map<const Eigen::VectorXd>(delta.data(), delta.size());
    gram = jac * jac.transpose();
  } else {
    if (args.has("jacobian") == args.has("gram")) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
    gram = args.has("gram") ? read_matrix(args.str("gram")) : [&] {
      const Eigen::MatrixXd jac = read_matrix(args.str("jacobian"));
      return Eigen::MatrixXd(jac * jac.transpose());
    }();
    const Eigen::MatrixXd res = read_matrix(args.str("residual"));
    r = Eigen::Map<const Eigen::VectorXd>(res.data(), res.size());
  }
  const double mu = alignment(gram, c, r);
  j[args.has("direction") ? "mu_lin" : "mu"] = mu;
  ReductionOptions ro;
  ro.rank_tolerance = args.number_or("rank-tol", 0.0);
  const Geometry g = Geometry::from_gram(gram, c, ro);
  j["mu_star"] = worst_case_alignment(g).mu_star;
  geometry_fields(j, g);
  j["definition"] = "mu = Tr(Sigma_1 G) / (2 L |G|_F^2) with Sigma_1 the single-sample SGD noise covariance, "
                    "G = J^T J / n; mu_lin(delta) uses the residuals J delta; mu_* is the minimum of mu_lin over range(H)";
  out << j.dump(2) << "\n";
  return exit_code(Exit::ok);
}

json curve_json(const Geometry& g, const std::vector<ThresholdResult>& curve) {
  json j;
  j["sampling"] = to_string(curve.front().sampling);
  geometry_fields(j, g);
  hessian_fields(j, g);
  json pts = json::array();
  for (const ThresholdResult& r : curve) {
    json p;
    p["batch"] = r.batch;
    p["eta_star"] = r.eta_star;
    p["converged"] = r.converged();
    p["status"] = to_string(r.status());
    p["matvecs"] = r.report.matvecs;
    p["method"] = to_string(r.report.method);
    pts.push_back(p);
  }
  j["points"] = pts;
  j["loss_convention"] = "1/2 squared error, mean over samples";
  return j;
}

// The first status of the curve that is not converged (converged if none).
Status curve_status(const std::vector<ThresholdResult>& curve) {
  Status status = Status::converged;
  for (const ThresholdResult& r : curve) status = combine(status, r.status());
  return status;
}

int cmd_curve(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(with_common({"batches"}));
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const Geometry g = load_geometry(args);
  const std::vector<ThresholdResult> curve = threshold_curve(g, batches_option(args, g.samples()), sampling, so);
  return finish(curve_json(g, curve), curve_status(curve), out, err);
}

// The built-in problem of `sgdstab demo`: random-feature regression.
Eigen::MatrixXd demo_jacobian(Index n, Index d, Index m) {
  Rng rng(20221128);  // fixed seed: the demo prints the same numbers everywhere
  auto gauss = [&]() {  // Box-Muller without the cached second value (the demo's numbers predate Rng::normal)
    const double u = rng.uniform(), v = rng.uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(6.283185307179586 * v);
  };
  Eigen::MatrixXd x(n, d), w(d, m);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = gauss();
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = gauss() / std::sqrt(static_cast<double>(d));
  // phi(x) = relu(W^T x) / sqrt(m): the Jacobian of f(x) = a . phi(x) in a.
  return (x * w).cwiseMax(0.0) / std::sqrt(static_cast<double>(m));
}

int cmd_demo(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only({"sampling", "method", "tol", "ncv"});
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  const SolverOptions so = solver_options(args);
  const Index n = 64, d = 16, m = 256;
  const Geometry g = Geometry::from_jacobian(demo_jacobian(n, d, m), 1);
  json j;
  j["problem"] = "random-feature regression: n = 64 Gaussian inputs in R^16, 256 ReLU features "
                 "(frozen), scalar output; the Jacobian of this linear-in-theta model is the same "
                 "at every theta, in particular at its interpolating minima";
  const std::vector<ThresholdResult> curve = threshold_curve(g, default_batches(n), sampling, so);
  j.update(curve_json(g, curve));
  return finish(j, curve_status(curve), out, err);
}

int cmd_montecarlo(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only({"jacobian", "gram", "outputs", "rank-tol", "space", "batch", "lr", "sampling", "steps",
                   "trajectories", "blocks", "seed", "quiet"});
  CrossCheckOptions o;
  o.schedule = parse_schedule(args.str_or("sampling", "without"));
  o.lr = args.number("lr");
  o.steps = args.integer_or("steps", 50);
  o.trajectories = args.integer_or("trajectories", 2000);
  o.blocks = args.integer_or("blocks", 2000);
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<std::uint64_t>(seed);
  const Geometry g = load_geometry(args);
  o.batch = batch_of(args, g);
  o.progress = progress_reporter(args, err, "sgdstab montecarlo: step");
  const CrossCheckReport rep = cross_check(g, o);
  json j;
  j["lr"] = o.lr;
  j["batch"] = o.batch;
  j["sampling"] = to_string(o.schedule);
  j["steps"] = o.steps;
  j["trajectories"] = o.trajectories;
  j["rho"] = rep.rho ? json(*rep.rho) : json(nullptr);
  j["eta_star"] = rep.eta_star ? json(*rep.eta_star) : json(nullptr);
  j["exact"] = rep.rho ? json(rep.exact.squared_norm) : json(nullptr);
  json mean = json::array(), low = json::array(), high = json::array(), median = json::array(), logm = json::array();
  for (const MomentEstimate& e : rep.simulation.squared_norm) {
    mean.push_back(e.mean);
    low.push_back(e.ci_low);
    high.push_back(e.ci_high);
    median.push_back(e.median);
    logm.push_back(e.mean_log);
  }
  j["mc_mean"] = mean;
  j["mc_ci_low"] = low;
  j["mc_ci_high"] = high;
  j["mc_median"] = median;
  j["mc_mean_log"] = logm;
  j["confidence"] = o.confidence;
  j["status"] = to_string(rep.status);
  j["rho_hat"] = rep.radius.rho_hat;
  j["rho_hat_ci_low"] = rep.radius.ci_low;
  j["rho_hat_ci_high"] = rep.radius.ci_high;
  j["rho_hat_blocks"] = rep.radius.blocks;
  j["rho_hat_steps_per_block"] = rep.radius.steps_per_block;
  j["verdict"] = to_string(rep.verdict);
  j["reason"] = rep.reason;
  j["note"] = "quantities are |delta_t|^2 in range(H), E|delta_0|^2 = 1; above the threshold the sample mean is "
              "heavy-tailed and underestimates the true moment at long horizons (see mc_median, mc_mean_log, "
              "and rho_hat, which does not compound)";
  j["seconds"] = rep.simulation.seconds;
  out << j.dump(2) << "\n";
  // Reshuffling has no exact answer: its verdict is inconclusive by
  // construction, and only the status of its estimate decides the exit code.
  const int code = rep.rho && rep.status == Status::converged ? exit_code(rep.verdict) : exit_code(rep.status);
  if (code == exit_code(Exit::disagree))
    err << "sgdstab: the Monte Carlo estimates disagree with the exact answer: " << rep.reason << "\n";
  else if (code != exit_code(Exit::ok))
    err << "sgdstab: " << (rep.radius.converged() ? rep.reason : rep.radius.message) << "\n";
  return code;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::set<std::string> problem_options(std::set<std::string> extra) {
  extra.insert(kProblemOptions.begin(), kProblemOptions.end());
  extra.insert(kProblemFlags.begin(), kProblemFlags.end());
  return extra;
}

int not_a_minimum(const json& j, std::ostream& out, std::ostream& err, const MinimizeResult& res) {
  out << j.dump(2) << "\n";
  err << "sgdstab: no interpolating minimum reached (" << res.message << "; max residual " << res.max_residual
      << " > tolerance " << res.tolerance << ")\n";
  return exit_code(res.status);
}

int cmd_escape(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(problem_options({"lr-factor", "runs", "epsilon", "escape-steps", "quiet"}));
  const Schedule schedule = parse_schedule(args.str_or("sampling", "without"));
  if (args.has("lr") == args.has("lr-factor"))
    throw UsageError("give exactly one of --lr ETA (the runs' learning rate) or --lr-factor F (F x eta*(B))");
  EscapeOptions eo;
  eo.schedule = schedule;
  eo.runs = args.integer_or("runs", 100);
  eo.epsilon = args.number_or("epsilon", 1e-3);
  eo.max_steps = args.integer_or("escape-steps", 20000);
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0, got " + std::to_string(seed));
  eo.seed = static_cast<std::uint64_t>(seed);
  const double lr_arg = args.has("lr") ? args.number("lr") : args.number("lr-factor");
  if (!(lr_arg > 0.0)) throw UsageError(std::string(args.has("lr") ? "--lr" : "--lr-factor") + " must be > 0");
  if (args.has("lr-factor") && !closed_form(schedule))
    throw UsageError("--lr-factor needs a closed-form scheme (not reshuffle): give --lr");
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
  const std::optional<Sampling> closed = closed_form(schedule);
  std::optional<double> eta_star, rho;
  if (closed) {
    const ThresholdResult thr = stability_threshold(g, eo.batch, *closed);
    if (!thr.converged()) {
      err << "sgdstab: the threshold eigensolver did not converge: " << thr.report.message << "\n";
      return exit_code(thr.status());
    }
    eta_star = thr.eta_star;
  }
  eo.lr = args.has("lr-factor") ? lr_arg * *eta_star : lr_arg;
  if (closed) {
    const RadiusResult rr = spectral_radius(g, eo.lr, eo.batch, *closed);
    if (!rr.converged()) {
      err << "sgdstab: the spectral-radius eigensolver did not converge: " << rr.report.message << "\n";
      return exit_code(rr.status());
    }
    rho = rr.rho;
  }
  eo.progress = progress_reporter(args, err, "sgdstab escape: run");
  const MlpProblem problem(p.model, p.data.inputs, p.data.targets);
  const EscapeReport rep = escape_runs(problem, p.model.parameters(), eo);
  j["lr"] = eo.lr;
  j["batch"] = eo.batch;
  j["sampling"] = to_string(schedule);
  j["eta_star"] = eta_star ? json(*eta_star) : json(nullptr);
  j["lr_over_eta_star"] = eta_star ? json(eo.lr / *eta_star) : json(nullptr);
  j["rho"] = rho ? json(*rho) : json(nullptr);
  j["log_rho"] = rho && *rho > 0.0 ? json(std::log(*rho)) : json(nullptr);
  j["runs"] = rep.runs;
  j["escaped"] = rep.escaped;
  j["converged"] = rep.converged;
  j["undecided"] = rep.undecided;
  j["escape_fraction"] = rep.escape_fraction;
  j["escape_ci_low"] = rep.ci_low;
  j["escape_ci_high"] = rep.ci_high;
  j["median_escape_step"] = std::isnan(rep.median_escape_step) ? json(nullptr) : json(rep.median_escape_step);
  j["growth_rate"] = std::isnan(rep.growth_rate) ? json(nullptr) : json(rep.growth_rate);
  j["epsilon"] = eo.epsilon;
  j["escape_steps"] = eo.max_steps;
  j["message"] = rep.message;
  j["note"] = "escaped: L grew past " + detail::fmt(eo.escape_factor) + " x its start; converged: L fell below " +
              detail::fmt(eo.converge_factor) + " x its start; growth_rate is the median of log(L_escape / L_0) / "
              "steps (the typical, almost-sure rate, at most log_rho)";
  out << j.dump(2) << "\n";
  return exit_code(Exit::ok);
}

int cmd_minimum(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(problem_options({}));
  const auto t0 = std::chrono::steady_clock::now();
  Problem p = build_problem(args);
  const MinimizeResult res = reach_minimum(args, p);
  json j;
  minimum_fields(j, p, res);
  j["seconds"] = seconds_since(t0);
  save_requested(args, p, j);
  if (!res.converged()) return not_a_minimum(j, out, err, res);
  out << j.dump(2) << "\n";
  return exit_code(Exit::ok);
}

int cmd_analyze(const Args& args, std::ostream& out, std::ostream& err) {
  args.allow_only(problem_options({"batches", "method", "tol", "ncv", "rank-tol", "space"}));
  // Every option is parsed before the (expensive) minimization.
  const Sampling sampling = parse_sampling(args.str_or("sampling", "without"));
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  ReductionOptions ro;
  ro.rank_tolerance = args.number_or("rank-tol", 0.0);
  const std::string space = args.str_or("space", "automatic");
  if (space == "parameter") ro.space = Space::parameter;
  else if (space == "sample") ro.space = Space::sample;
  else if (space != "automatic") throw UsageError("--space: expected automatic|parameter|sample, got '" + space + "'");
  auto t0 = std::chrono::steady_clock::now();
  Problem p = build_problem(args);
  const std::vector<Index> batches = batches_option(args, p.data.samples());  // before the minimization
  const MinimizeResult res = reach_minimum(args, p);
  json timing;
  timing["minimum_s"] = seconds_since(t0);
  json j, minimum;
  minimum_fields(minimum, p, res);
  j["minimum"] = minimum;
  MinimumCheck check;
  check.residual_tolerance = args.number_or("residual-tol", 1e-10);
  check.allow_nonzero_residual = args.flag("allow-residual");
  if (!res.converged() && !check.allow_nonzero_residual) {
    save_requested(args, p, j["minimum"]);
    return not_a_minimum(j, out, err, res);
  }
  t0 = std::chrono::steady_clock::now();
  const Geometry g = geometry_at_minimum(p.model, p.data.inputs, p.data.targets, check, ro);
  timing["geometry_s"] = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const std::vector<ThresholdResult> curve = threshold_curve(g, batches, sampling, so);
  j["stability"] = curve_json(g, curve);
  j["stability"]["params"] = p.model.num_parameters();
  timing["curve_s"] = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const double mu_star = worst_case_alignment(g).mu_star;
  json table = json::array();
  for (const ThresholdResult& known : curve)
    table.push_back(bounds_json(stability_bounds(g, known.batch, sampling, so, &known, mu_star)));
  j["bounds"] = table;
  timing["bounds_s"] = seconds_since(t0);
  j["timing"] = timing;
  save_requested(args, p, j["minimum"]);
  return finish(j, curve_status(curve), out, err);
}

}  // namespace

int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  try {
    if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "help" ||
                      std::string(argv[1]) == "-h")) {
      out << kUsageText << "\n" << exit_code_help();
      return exit_code(Exit::ok);
    }
    if (argc >= 2 && std::string(argv[1]) == "cnn") {  // `sgdstab cnn SUB ...`: SUB is the command
#ifdef SGDSTAB_HAVE_CNN
      const Args sub(argc - 1, argv + 1, kProblemFlags);
      std::ostringstream buffer;
      const int code = cmd_cnn(sub, buffer, err);
      out << buffer.str();
      return code;
#else
      throw UsageError("cnn: this build has no LibTorch module (install libtorch-dev, or point Torch_DIR at a "
                       "LibTorch, and rebuild)");
#endif
    }
    const Args args(argc, argv, kProblemFlags);
    const std::string& cmd = args.command();
    std::ostringstream buffer;  // nothing reaches `out` unless the command succeeds
    int code;
    if (cmd == "threshold") code = cmd_threshold(args, buffer, err);
    else if (cmd == "radius") code = cmd_radius(args, buffer, err);
    else if (cmd == "curve") code = cmd_curve(args, buffer, err);
    else if (cmd == "demo") code = cmd_demo(args, buffer, err);
    else if (cmd == "minimum") code = cmd_minimum(args, buffer, err);
    else if (cmd == "montecarlo") code = cmd_montecarlo(args, buffer, err);
    else if (cmd == "bounds") code = cmd_bounds(args, buffer, err);
    else if (cmd == "alignment") code = cmd_alignment(args, buffer, err);
    else if (cmd == "escape") code = cmd_escape(args, buffer, err);
    else if (cmd == "analyze") code = cmd_analyze(args, buffer, err);
    else throw UsageError("unknown command '" + cmd + "'");
    out << buffer.str();
    return code;
  } catch (const UsageError& e) {
    err << "sgdstab: " << e.what() << "\n\n" << kUsageText;
    return exit_code(Exit::usage);
  } catch (const sgdstab::invalid_argument& e) {
    err << "sgdstab: invalid input: " << e.what() << "\n";
    return exit_code(Exit::usage);
  } catch (const io_error& e) {  // the message names the file and the operation (read, write, mkdir)
    err << "sgdstab: I/O error: " << e.what() << "\n";
    return exit_code(Exit::failure);
  } catch (const resource_error& e) {
    err << "sgdstab: too large: " << e.what() << "\n";
    return exit_code(Exit::failure);
  } catch (const numerical_error& e) {
    err << "sgdstab: numerical failure: " << e.what() << "\n";
    return exit_code(e.status());
  } catch (const std::exception& e) {
    err << "sgdstab: error: " << e.what() << "\n";
    return exit_code(Exit::failure);
  }
}

}  // namespace sgdstab::cli
