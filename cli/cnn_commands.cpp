// `sgdstab cnn train|analyze|sweep`: the optional LibTorch module from the
// command line (theory/cnn.md).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.hpp"
#include "commands.hpp"
#include "plot.hpp"
#include "problem.hpp"
#include "report.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;
using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct CnnProblem {
  Dataset data;
  cnn::CnnSpec spec;
};

std::vector<int64_t> int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_integer(item, what));
  if (out.empty()) throw UsageError(what + ": empty list");
  return out;
}

std::vector<double> number_list(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    out.push_back(parse_number(item, what));
    if (!(out.back() > 0.0)) throw UsageError(what + ": every value must be > 0, got " + item);
  }
  if (out.empty()) throw UsageError(what + ": empty list");
  return out;
}

CnnProblem cnn_problem(const Args& args) {
  CnnProblem p;
  const std::string data = args.str_or("data", "synthetic");
  Selection sel;
  if (args.has("classes"))
    for (long long c : args.integer_list("classes")) sel.classes.push_back(static_cast<int>(c));
  sel.per_class = args.integer_or("per-class", 16);
  const PixelScaling scaling = parse_pixel_scaling(args.str_or("scaling", "unit"));
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0");
  if (data == "synthetic") {
    if (args.has("scaling")) throw UsageError("--scaling applies to image data (fashion-mnist, cifar10), not synthetic");
    if (sel.classes.empty()) sel.classes = {0, 1};
    const Index n = static_cast<Index>(sel.classes.size()) * sel.per_class;
    if (n < 1) throw UsageError("--per-class: N must be >= 1");
    p.spec.in_channels = 1;
    p.spec.height = p.spec.width = 8;
    p.data.inputs = gaussian_inputs(n, 64, static_cast<std::uint64_t>(seed) + 1);
    std::vector<int> labels;
    for (Index i = 0; i < n; ++i) labels.push_back(sel.classes[static_cast<std::size_t>(i % static_cast<Index>(sel.classes.size()))]);
    p.data.targets = one_hot(labels, sel.classes);
    p.data.labels = labels;
    p.data.description = "synthetic: " + std::to_string(n) + " Gaussian 1 x 8 x 8 images, labels cycling";
  } else if (data == "fashion-mnist" || data.rfind("cifar10:", 0) == 0) {
    const bool fm = data == "fashion-mnist";
    const LabeledImages images = fm ? read_fashion_mnist(args.has("data-dir") ? args.str("data-dir")
                                                                              : find_fashion_mnist_directory(),
                                                         true)
                                    : read_cifar10(data.substr(8), true);
    p.data = select_classes(images, sel, scaling, fm ? "fashion-mnist train" : "cifar10 train");
    p.spec.in_channels = images.channels;
    p.spec.height = images.rows;
    p.spec.width = images.cols;
  } else {
    throw UsageError("--data: expected synthetic, fashion-mnist or cifar10:DIR, got '" + data + "'");
  }
  const std::string arch = args.str_or("arch", "vgg:8,16");
  p.spec.hidden = int_list(args.str_or("hidden", "64"), "--hidden");
  p.spec.outputs = p.data.outputs();
  try {
    if (arch.rfind("vgg11", 0) == 0) {  // vgg11 or vgg11/DIVISOR: VGG-11's layout, widths / DIVISOR (default 8)
      if (arch.size() > 5 && arch[5] != '/') throw UsageError("--arch: expected vgg11 or vgg11/DIVISOR, got '" + arch + "'");
      const long long divisor = arch.size() > 5 ? parse_integer(arch.substr(6), "--arch vgg11/DIVISOR") : 8;
      p.spec = cnn::CnnSpec::vgg11(divisor, p.spec.in_channels, p.spec.height, p.spec.width, p.spec.hidden,
                                   p.spec.outputs);
    } else if (arch.rfind("vgg:", 0) == 0) {  // vgg:C1,C2,... (pool after each) or with M marking the pools
      std::stringstream ss(arch.substr(4));
      std::string item;
      bool marked = false;
      std::vector<bool> pool;
      p.spec.channels.clear();
      while (std::getline(ss, item, ',')) {
        if (item == "M") {
          if (pool.empty() || pool.back()) throw UsageError("--arch: M must follow a convolution width, in '" + arch + "'");
          pool.back() = marked = true;
          continue;
        }
        p.spec.channels.push_back(parse_integer(item, "--arch"));
        pool.push_back(false);
      }
      if (pool.empty()) throw UsageError("--arch: no convolution in '" + arch + "'");
      if (marked) p.spec.pool = pool;
      p.spec.validate();
    } else {
      throw UsageError("--arch: expected vgg:C1,C2,... (with optional M for the pools) or vgg11[/DIVISOR], got '" +
                       arch + "'");
    }
  } catch (const sgdstab::invalid_argument& e) {
    throw UsageError(std::string("--arch/--hidden: ") + e.what());
  }
  return p;
}

cnn::GramOptions gram_options(const Args& args) {
  cnn::GramOptions g;
  g.chunk = args.integer_or("gram-chunk", 0);
  if (g.chunk < 0) throw UsageError("--gram-chunk: N must be >= 0 (0 = automatic)");
  const double mib = args.number_or("gram-memory", 0.0);
  if (mib < 0.0) throw UsageError("--gram-memory: MiB must be >= 0 (0 = half the available memory)");
  g.memory_limit_bytes = mib * 1024.0 * 1024.0;
  return g;
}

cnn::CnnTrainOptions train_options(const Args& args, double lr, Index batch) {
  cnn::CnnTrainOptions o;
  o.lr = lr;
  o.batch = batch;
  o.schedule = parse_schedule(args.str_or("sampling", "without"));
  o.max_steps = args.integer_or("max-steps", 100000);
  o.residual_tolerance = args.number_or("residual-tol", 1e-6);
  o.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 7;
  return o;
}

json problem_fields(const CnnProblem& p, const cnn::Cnn& net, const torch::Device& device) {
  json j;
  j["data"] = p.data.description;
  j["samples"] = p.data.samples();
  j["outputs"] = p.data.outputs();
  j["params"] = net.num_parameters();
  std::vector<bool> pools;
  for (std::size_t l = 0; l < p.spec.channels.size(); ++l) pools.push_back(p.spec.pools_after(l));
  j["arch"] = {{"channels", p.spec.channels}, {"pool_after", pools}, {"hidden", p.spec.hidden},
               {"image", {p.spec.in_channels, p.spec.height, p.spec.width}}};
  j["device"] = device.str();
  return j;
}

void result_fields(json& j, const MinimizeResult& res) {
  j["converged"] = res.converged();
  j["steps"] = res.iterations;
  j["loss"] = res.loss;
  j["max_residual"] = res.max_residual;
  j["residual_tolerance"] = res.tolerance;
  j["message"] = res.message;
  j["loss_convention"] = "1/2 squared error, mean over samples (torch MSELoss(mean) = (2/c) x this)";
}

// The residual vector (f - y, rows i*c + k) at the network's parameters.
VectorXd residual_vector(const cnn::Cnn& net, const Dataset& d) {
  const MatrixXd res = net.forward(d.inputs) - d.targets;
  VectorXd r(res.size());
  for (Index i = 0; i < res.rows(); ++i) r.segment(i * res.cols(), res.cols()) = res.row(i).transpose();
  return r;
}

// The network's parameters from the vector file named by --KEY (p values, a
// row or a column, as --save-params / --checkpoint write them).
void set_parameters_from(const Args& args, const std::string& key, cnn::Cnn& net) {
  const MatrixXd theta = read_matrix(args.str(key));
  if (theta.size() != net.num_parameters() || (theta.cols() != 1 && theta.rows() != 1))
    throw sgdstab::invalid_argument("--" + key + ": expected a vector of p = " + std::to_string(net.num_parameters()) +
                                    " values for this architecture, got " + std::to_string(theta.rows()) + " x " +
                                    std::to_string(theta.cols()));
  net.set_parameters(Eigen::Map<const VectorXd>(theta.data(), theta.size()));
}

// The alignment log of one training run: step, loss, mu, |G|_F every
// `every` steps (theory/cnn.md, section 8), and the smallest mu seen.
struct AlignmentLog {
  const CnnProblem& p;
  cnn::GramOptions gram;
  Index every = 0;
  std::string text = "step,loss,mu,g_frobenius\n";
  double mu_min = NAN;
  void record(Index step, const cnn::Cnn& at) {
    if (every < 1 || step % every != 0) return;
    if (!residual_vector(at, p.data).allFinite()) return;  // diverging: train_cnn reports it
    const AlignmentSample a = cnn::alignment_at(at, p.data.inputs, p.data.targets, step, gram);
    char buf[128];
    std::snprintf(buf, sizeof buf, "%lld,%.17g,%.17g,%.17g\n", static_cast<long long>(step), a.loss, a.mu,
                  a.g_frobenius);
    text += buf;
    last = step;
    if (std::isfinite(a.mu) && !(a.mu >= mu_min)) mu_min = a.mu;
  }
  // The last step of the run too (the point reached), when not on the cadence.
  void record_final(Index step, const cnn::Cnn& at) {
    if (every >= 1 && step != last) {
      const Index keep = every;
      every = 1;
      record(step, at);
      every = keep;
    }
  }
  Index last = -1;
};

// Writes the parameters atomically unless they are non-finite (then keeps the old file).
bool checkpoint(const std::string& path, const cnn::Cnn& net) {
  const VectorXd theta = net.parameters();
  if (!theta.allFinite()) return false;
  write_matrix(path, theta);
  return true;
}

Index log_every_option(const Args& args) {
  const Index k = args.integer_or("log-every", 10);
  if (k < 1) throw UsageError("--log-every: K must be >= 1");
  return k;
}

// Training with the options' extras: --init-params, progress on stderr,
// --checkpoint FILE every --checkpoint-every steps, --alignment-log FILE every
// --log-every steps. The paths written go to `files`.
MinimizeResult train(const Args& args, const CnnProblem& p, cnn::Cnn& net, cnn::CnnTrainOptions o, json& files,
                     std::ostream& err) {
  if (args.has("init-params")) set_parameters_from(args, "init-params", net);
  o.progress = progress_reporter(args, err, "sgdstab cnn: step");
  if (args.has("checkpoint-every") && !args.has("checkpoint")) throw UsageError("--checkpoint-every: needs --checkpoint FILE");
  if (args.has("log-every") && !args.has("alignment-log")) throw UsageError("--log-every: needs --alignment-log FILE");
  const Index ckpt_every = args.integer_or("checkpoint-every", 1000);
  if (ckpt_every < 1) throw UsageError("--checkpoint-every: K must be >= 1");
  const std::string log_path = args.str_or("alignment-log", ""), ckpt_path = args.str_or("checkpoint", "");
  AlignmentLog log{p, gram_options(args), log_path.empty() ? 0 : log_every_option(args)};
  if (!log_path.empty() || !ckpt_path.empty()) {
    o.observe_every = 1;
    o.observer = [&](Index step, const cnn::Cnn& at) {
      if (!ckpt_path.empty() && step > 0 && step % ckpt_every == 0) checkpoint(ckpt_path, at);
      log.record(step, at);
    };
  }
  const MinimizeResult res = cnn::train_cnn(net, p.data.inputs, p.data.targets, o);
  log.record_final(res.iterations, net);
  if (!ckpt_path.empty()) {
    // The final state, whatever the cadence; a diverged state never replaces the last good one.
    if (checkpoint(ckpt_path, net)) files["checkpoint"] = ckpt_path;
    else files["checkpoint_not_updated"] = "non-finite parameters at the end (the run diverged)";
  }
  if (!log_path.empty()) {
    write_text(log_path, log.text);
    files["alignment_log"] = log_path;
  }
  return res;
}

// Parameters from --params (no training): the result describes them.
MinimizeResult load_params(const Args& args, const CnnProblem& p, cnn::Cnn& net) {
  set_parameters_from(args, "params", net);
  const VectorXd r = residual_vector(net, p.data);
  MinimizeResult res;
  res.method = "loaded";
  res.tolerance = residual_tolerance_for(p.data.targets, args.number_or("residual-tol", 1e-6));
  res.loss = 0.5 * r.squaredNorm() / static_cast<double>(p.data.samples());
  res.max_residual = r.cwiseAbs().maxCoeff();
  res.status = res.max_residual <= res.tolerance ? Status::converged : Status::not_converged;
  res.message = res.converged() ? "loaded parameters interpolate" : "loaded parameters do not interpolate";
  return res;
}

void save_outputs(const Args& args, const cnn::Cnn& net, const Dataset& d, const MatrixXd* gram, json& files) {
  if (args.has("save-params")) {
    const VectorXd theta = net.parameters();
    if (theta.allFinite()) {
      write_matrix(args.str("save-params"), theta);
      files["params"] = args.str("save-params");
    } else {
      files["params_not_written"] = "non-finite parameters (the run diverged)";
    }
  }
  if (args.has("save-jacobian")) {
    write_matrix(args.str("save-jacobian"), net.jacobian(d.inputs));
    files["jacobian"] = args.str("save-jacobian");
  }
  if (args.has("save-gram")) {
    write_matrix(args.str("save-gram"), gram ? *gram : net.gram(d.inputs, gram_options(args)));
    files["gram"] = args.str("save-gram");
  }
}

json gram_json(const cnn::GramInfo& gi, double seconds, Index samples) {
  return {{"chunk", gi.chunk}, {"chunks", gi.chunks}, {"passes", gi.passes}, {"streamed", gi.streamed},
          {"seconds", seconds}, {"samples_per_second", static_cast<double>(samples) / std::max(seconds, 1e-9)}};
}

int run_train(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const CnnProblem p = cnn_problem(args);
  const torch::Device device = cnn::resolve_device(cnn::parse_device(args.str_or("device", "auto")));
  cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
  const cnn::CnnTrainOptions o = train_options(args, args.number("lr"), args.integer("batch"));
  json j = problem_fields(p, net, device);
  j["lr"] = o.lr;
  j["batch"] = o.batch;
  j["sampling"] = to_string(o.schedule);
  json files = json::object();
  const MinimizeResult res = train(args, p, net, o, files, err);
  result_fields(j, res);
  save_outputs(args, net, p.data, nullptr, files);
  j["files"] = files;
  j["seconds"] = since(t0);
  out << j.dump(2) << "\n";
  return exit_code(res.status);
}

int run_analyze(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const CnnProblem p = cnn_problem(args);
  const torch::Device device = cnn::resolve_device(cnn::parse_device(args.str_or("device", "auto")));
  cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
  // Every option is checked before any training or file is written.
  const bool loaded = args.has("params");
  if (loaded) {
    for (const char* opt : {"init-params", "checkpoint", "checkpoint-every", "alignment-log", "log-every", "max-steps"})
      if (args.has(opt)) throw UsageError(std::string("--") + opt + " does not apply with --params (no training)");
    if (args.has("lr") != args.has("batch")) throw UsageError("--lr and --batch go together (rho at that lr and B)");
  }
  const std::string geometry = args.str_or("geometry", "exact");
  if (geometry != "exact" && geometry != "hvp") throw UsageError("--geometry: expected exact or hvp, got '" + geometry + "'");
  const bool exact = geometry == "exact";
  const Index probes = args.integer_or("probes", 20), iters = args.integer_or("lanczos-iters", 50);
  if (probes != 0 && probes < 2) throw UsageError("--probes: K must be 0 (skip) or >= 2");
  if (iters < 0) throw UsageError("--lanczos-iters: K must be 0 (skip) or >= 1");
  if (!exact) {
    for (const char* opt : {"batches", "save-gram"})
      if (args.has(opt)) throw UsageError(std::string("--") + opt + " needs the Gram: not with --geometry hvp");
    if (probes == 0 && iters == 0) throw UsageError("--geometry hvp with --probes 0 and --lanczos-iters 0 computes nothing");
  }
  const std::vector<Index> batches = exact ? batches_option(args, p.data.samples()) : std::vector<Index>{};
  const double lr = args.has("lr") || !loaded ? args.number("lr") : 0.0;
  const Index batch = args.has("batch") || !loaded ? args.integer("batch") : 0;
  if (args.has("batch")) check_batch(batch, p.data.samples(), "--batch");
  const Schedule schedule = parse_schedule(args.str_or("sampling", "without"));
  json j = problem_fields(p, net, device);
  if (lr > 0.0) j["lr"] = lr;
  if (batch > 0) j["batch"] = batch;
  j["sampling"] = to_string(schedule);
  json files = json::object(), timing = json::object();
  auto t = Clock::now();
  const MinimizeResult res = loaded ? load_params(args, p, net)
                                    : train(args, p, net, train_options(args, lr, batch), files, err);
  timing["train"] = since(t);
  result_fields(j, res);
  if (loaded) j["params_file"] = args.str("params");
  const auto finish = [&](int code) {
    j["files"] = files;
    j["timing"] = timing;
    j["seconds"] = since(t0);
    out << j.dump(2) << "\n";
    return code;
  };
  if (!res.converged() && !args.flag("allow-residual")) {
    save_outputs(args, net, p.data, nullptr, files);
    err << "sgdstab: no interpolating minimum reached (" << res.message << "); --allow-residual analyzes anyway\n";
    return finish(3);
  }
  // --geometry exact (default): the Gram, the exact curve and bounds; hvp: only
  // the Hessian-vector-product estimates (for n whose Gram would not fit).
  std::optional<Geometry> g;
  Status status = Status::converged;
  if (exact) {
    t = Clock::now();
    cnn::GramInfo gi;
    const MatrixXd gram = net.gram(p.data.inputs, gram_options(args), &gi);
    j["gram"] = gram_json(gi, since(t), p.data.samples());
    timing["gram"] = since(t);
    save_outputs(args, net, p.data, &gram, files);

    t = Clock::now();
    g.emplace(Geometry::from_gram(gram, p.data.outputs()));
    const Sampling s = closed_form(schedule).value_or(Sampling::without_replacement);
    const double mu_star = worst_case_alignment(*g).mu_star;
    json table = json::array();
    for (const ThresholdResult& r : threshold_curve(*g, batches, s)) {
      table.push_back(bounds_json(stability_bounds(*g, r.batch, s, {}, &r, mu_star)));
      status = combine(status, r.status());
    }
    j["analysis_sampling"] = to_string(s);
    j["rank"] = g->rank();
    j["lambda_max"] = g->lambda_max();
    j["hessian_frobenius"] = g->hessian_frobenius();
    j["mu_star"] = mu_star;
    const VectorXd r = residual_vector(net, p.data);
    j["mu"] = r.squaredNorm() > 0.0 ? json(alignment(gram, p.data.outputs(), r)) : json(nullptr);
    if (lr > 0.0 && batch >= 1 && batch <= g->samples()) {
      const RadiusResult rr = spectral_radius(*g, lr, batch, s);
      status = combine(status, rr.status());
      j["at_lr"] = {{"lr", lr}, {"batch", batch}, {"rho", rr.rho}, {"stable", rr.rho <= 1.0},
                    {"converged", rr.converged()}};
    }
    j["points"] = table;
    timing["curve"] = since(t);
  } else {
    save_outputs(args, net, p.data, nullptr, files);
  }
  j["geometry"] = geometry;

  // Cross-checks from Hessian-vector products (the route for large n).
  if (probes != 0) {
    t = Clock::now();
    const cnn::HutchinsonEstimate h = cnn::hutchinson_frobenius(net, p.data.inputs, p.data.targets, probes,
                                                                static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 11);
    j["hutchinson"] = {{"hessian_frobenius", std::sqrt(std::max(h.frobenius_squared, 0.0))},
                       {"ci_low", std::sqrt(std::max(h.ci_low, 0.0))}, {"ci_high", std::sqrt(std::max(h.ci_high, 0.0))},
                       {"confidence", h.confidence}, {"probes", h.probes},
                       {"contains_exact", g ? json(std::sqrt(std::max(h.ci_low, 0.0)) <= g->hessian_frobenius() &&
                                                   g->hessian_frobenius() <= std::sqrt(std::max(h.ci_high, 0.0)))
                                            : json(nullptr)}};
    timing["hutchinson"] = since(t);
  }
  if (iters != 0) {
    t = Clock::now();
    cnn::LanczosOptions lo;
    lo.max_iterations = iters;
    lo.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 13;
    const cnn::LanczosEstimate l = cnn::lanczos_lambda_max(net, p.data.inputs, p.data.targets, lo);
    j["lanczos"] = {{"lambda_max", l.lambda_max}, {"lower", l.lower}, {"upper", l.upper}, {"iterations", l.iterations},
                    {"converged", l.converged()}, {"message", l.message},
                    {"eta_gd_low", l.converged() && l.upper > 0.0 ? json(2.0 / l.upper) : json(nullptr)},
                    {"eta_gd_high", l.lower > 0.0 ? json(2.0 / l.lower) : json(nullptr)}};
    if (!exact) status = combine(status, l.status);  // then it is the answer, not a cross-check
    timing["lanczos"] = since(t);
  }
  if (status != Status::converged) err << "sgdstab: an eigensolver did not converge (" << to_string(status) << ")\n";
  return finish(exit_code(status));
}

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

// The seed paper's experiment: one training run per (lr, B) from the same
// initialization; at each reached minimum |H|_F, lambda_max, eta*(B), mu and
// mu_*; CSV rewritten after every run, SVG of |H|_F against sqrt(B)/lr.
int run_sweep(const Args& args, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  const std::vector<double> lrs = number_list(args.str("lrs"), "--lrs");
  for (std::size_t a = 0; a < lrs.size(); ++a)
    for (std::size_t b = a + 1; b < lrs.size(); ++b)
      if (lrs[a] == lrs[b]) throw UsageError("--lrs: " + shortest(lrs[a]) + " is given twice");
  const CnnProblem p = cnn_problem(args);
  std::vector<Index> batches;
  for (long long b : args.integer_list("batches")) {
    check_batch(static_cast<Index>(b), p.data.samples(), "--batches");
    if (std::find(batches.begin(), batches.end(), static_cast<Index>(b)) != batches.end())
      throw UsageError("--batches: " + std::to_string(b) + " is given twice");
    batches.push_back(static_cast<Index>(b));
  }
  const std::filesystem::path dir = args.str("out");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw io_error(dir.string() + ": cannot create the output directory (" + ec.message() + ")");
  const torch::Device device = cnn::resolve_device(cnn::parse_device(args.str_or("device", "auto")));
  const auto seed = static_cast<std::uint64_t>(args.integer_or("seed", 0));
  const cnn::GramOptions go = gram_options(args);
  const Index log_every = args.has("log-every") ? log_every_option(args) : 0;  // mu along each run
  const std::string csv_path = (dir / "sweep.csv").string(), svg_path = (dir / "hessian_frobenius_vs_sqrtB_over_lr.svg").string();
  json rows = json::array();
  json j;
  Status status = Status::converged;
  const std::size_t total = lrs.size() * batches.size();
  for (Index b : batches)
    for (double lr : lrs) {
      const auto t = Clock::now();
      cnn::Cnn net(p.spec, seed, device);  // the same initialization for every run
      if (j.empty()) j = problem_fields(p, net, device);
      cnn::CnnTrainOptions o = train_options(args, lr, b);
      if (!args.flag("quiet"))
        err << "sgdstab cnn sweep: run " << rows.size() + 1 << "/" << total << ": lr " << lr << ", B " << b << "\n";
      AlignmentLog log{p, go, log_every};
      if (log_every > 0) {
        o.observe_every = log_every;
        o.observer = [&log](Index step, const cnn::Cnn& at) { log.record(step, at); };
      }
      const MinimizeResult res = cnn::train_cnn(net, p.data.inputs, p.data.targets, o);
      log.record_final(res.iterations, net);
      const std::string tag = "lr" + shortest(lr) + "_B" + std::to_string(b);
      const std::string name = "params_" + tag + ".npy", log_name = "alignment_" + tag + ".csv";
      if (log_every > 0) write_text((dir / log_name).string(), log.text);
      const VectorXd theta = net.parameters();
      const bool finite = theta.allFinite();  // a diverged run may have overflowed: nothing to save
      if (finite) write_matrix((dir / name).string(), theta);
      json row = {{"lr", lr}, {"batch", b}, {"sampling", to_string(o.schedule)}, {"converged", res.converged()},
                  {"steps", res.iterations}, {"loss", res.loss}, {"max_residual", res.max_residual},
                  {"sqrt_batch_over_lr", std::sqrt(static_cast<double>(b)) / lr},
                  {"params_file", finite ? json(name) : json(nullptr)}, {"message", res.message}};
      if (log_every > 0) {
        row["mu_min_training"] = std::isfinite(log.mu_min) ? json(log.mu_min) : json(nullptr);
        row["alignment_log"] = log_name;
      }
      if (res.converged()) try {
        const MatrixXd gram = net.gram(p.data.inputs, go);
        const Geometry g = Geometry::from_gram(gram, p.data.outputs());
        const Sampling s = closed_form(o.schedule).value_or(Sampling::without_replacement);
        const ThresholdResult thr = stability_threshold(g, b, s);
        const double mu_star = worst_case_alignment(g).mu_star;
        const StabilityBounds bd = stability_bounds(g, b, s, {}, &thr, mu_star);
        const VectorXd r = residual_vector(net, p.data);
        status = combine(status, thr.status());
        row["hessian_frobenius"] = g.hessian_frobenius();
        row["lambda_max"] = g.lambda_max();
        row["eta_star"] = thr.eta_star;
        row["lr_over_eta_star"] = lr / thr.eta_star;
        row["mu"] = r.squaredNorm() > 0.0 ? json(alignment(gram, p.data.outputs(), r)) : json(nullptr);
        row["mu_star"] = mu_star;
        row["gamma"] = bd.gamma;
        row["eta_alignment"] = bd.eta_alignment ? json(*bd.eta_alignment) : json(nullptr);
      } catch (const sgdstab::resource_error& e) {  // this run's geometry does not fit: say so, go on
        row["message"] = res.message + "; geometry not computed: " + e.what();
      }
      row["seconds"] = since(t);
      rows.push_back(row);
      write_text(csv_path, sweep_csv(rows));  // rewritten whole after every run
    }
  std::vector<ScatterPoint> pts;
  for (const auto& row : rows)
    if (row["converged"].get<bool>())
      pts.push_back({row["sqrt_batch_over_lr"].get<double>(), row["hessian_frobenius"].get<double>(),
                     "B = " + std::to_string(row["batch"].get<Index>())});
  write_text(svg_path, scatter_svg(pts, "|H|_F at the minima SGD reached: " + args.str_or("data", "synthetic") +
                                            ", n = " + std::to_string(p.data.samples()),
                                   "sqrt(B) / lr", "|H|_F"));
  j["lrs"] = lrs;
  j["batches"] = batches;
  j["residual_tolerance"] = args.number_or("residual-tol", 1e-6);
  j["max_steps"] = args.integer_or("max-steps", 100000);
  j["runs"] = rows;
  j["files"] = {{"csv", csv_path}, {"svg", svg_path}, {"directory", dir.string()}};
  j["seconds"] = since(t0);
  out << j.dump(2) << "\n";
  if (status != Status::converged) err << "sgdstab: an eigensolver did not converge (" << to_string(status) << ")\n";
  return exit_code(status);
}

}  // namespace

int cmd_cnn_train(const Args& args, std::ostream& out, std::ostream& err) { return run_train(args, out, err); }
int cmd_cnn_analyze(const Args& args, std::ostream& out, std::ostream& err) { return run_analyze(args, out, err); }
int cmd_cnn_sweep(const Args& args, std::ostream& out, std::ostream& err) { return run_sweep(args, out, err); }

}  // namespace sgdstab::cli
