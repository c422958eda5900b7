// What the `sgdstab cnn` commands share (cli/cnn_problem.hpp; theory/cnn.md).
#include "cnn_problem.hpp"

#include <cstdio>
#include <sstream>

#include "inputs.hpp"
#include "option_table.hpp"
#include "problem.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using Eigen::MatrixXd;
using Eigen::VectorXd;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

namespace {
std::vector<int64_t> int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_integer(item, what));
  if (out.empty()) throw UsageError(what + ": empty list");
  return out;
}
}  // namespace

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

namespace {

// --data synthetic: Gaussian 1 x 8 x 8 images, labels cycling through the classes.
Dataset synthetic_images(Selection sel, std::uint64_t seed, cnn::CnnSpec& spec) {
  if (sel.classes.empty()) sel.classes = {0, 1};
  const Index n = static_cast<Index>(sel.classes.size()) * sel.per_class;
  if (n < 1) throw UsageError("--per-class: N must be >= 1");
  spec.in_channels = 1;
  spec.height = spec.width = 8;
  Dataset d;
  d.inputs = gaussian_inputs(n, 64, seed + 1);
  std::vector<int> labels;
  for (Index i = 0; i < n; ++i) labels.push_back(sel.classes[static_cast<std::size_t>(i % static_cast<Index>(sel.classes.size()))]);
  d.targets = one_hot(labels, sel.classes);
  d.labels = labels;
  d.description = "synthetic: " + std::to_string(n) + " Gaussian 1 x 8 x 8 images, labels cycling";
  return d;
}

// The data set named by --data; the image shape goes into spec.
Dataset cnn_data(const Args& args, cnn::CnnSpec& spec) {
  const std::string data = args.str_or("data", "synthetic");
  Selection sel;
  if (args.has("classes"))
    for (long long c : args.integer_list("classes")) sel.classes.push_back(static_cast<int>(c));
  sel.per_class = args.integer_or("per-class", 16);
  const PixelScaling scaling = args.choice("scaling", PixelScaling::unit);
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0");
  if (data == "synthetic") {
    if (args.has("scaling")) throw UsageError("--scaling applies to image data (fashion-mnist, cifar10), not synthetic");
    return synthetic_images(sel, static_cast<std::uint64_t>(seed), spec);
  }
  if (data != "fashion-mnist" && data.rfind("cifar10:", 0) != 0)
    throw UsageError("--data: expected synthetic, fashion-mnist or cifar10:DIR, got '" + data + "'");
  const bool fm = data == "fashion-mnist";
  const LabeledImages images =
      fm ? read_fashion_mnist(args.has("data-dir") ? args.str("data-dir") : find_fashion_mnist_directory(), true)
         : read_cifar10(data.substr(8), true);
  spec.in_channels = images.channels;
  spec.height = images.rows;
  spec.width = images.cols;
  return select_classes(images, sel, scaling, fm ? "fashion-mnist train" : "cifar10 train");
}

// --arch vgg:C1,C2,... (a pool after each) or with M entries marking the pools.
void parse_vgg_widths(const std::string& arch, cnn::CnnSpec& spec) {
  std::stringstream ss(arch.substr(4));
  std::string item;
  bool marked = false;
  std::vector<bool> pool;
  spec.channels.clear();
  while (std::getline(ss, item, ',')) {
    if (item == "M") {
      if (pool.empty() || pool.back()) throw UsageError("--arch: M must follow a convolution width, in '" + arch + "'");
      pool.back() = marked = true;
      continue;
    }
    spec.channels.push_back(parse_integer(item, "--arch"));
    pool.push_back(false);
  }
  if (pool.empty()) throw UsageError("--arch: no convolution in '" + arch + "'");
  if (marked) spec.pool = pool;
  spec.validate();
}

// --arch and --hidden on top of the image shape and outputs already in spec.
void parse_arch(const Args& args, cnn::CnnSpec& spec) {
  const std::string arch = args.str_or("arch", "vgg:8,16");
  spec.hidden = int_list(args.str_or("hidden", "64"), "--hidden");
  try {
    if (arch.rfind("vgg11", 0) == 0) {  // vgg11 or vgg11/DIVISOR: VGG-11's layout, widths / DIVISOR (default 8)
      if (arch.size() > 5 && arch[5] != '/') throw UsageError("--arch: expected vgg11 or vgg11/DIVISOR, got '" + arch + "'");
      const long long divisor = arch.size() > 5 ? parse_integer(arch.substr(6), "--arch vgg11/DIVISOR") : 8;
      spec = cnn::CnnSpec::vgg11(divisor, spec.in_channels, spec.height, spec.width, spec.hidden, spec.outputs);
    } else if (arch.rfind("vgg:", 0) == 0) {
      parse_vgg_widths(arch, spec);
    } else {
      throw UsageError("--arch: expected vgg:C1,C2,... (with optional M for the pools) or vgg11[/DIVISOR], got '" +
                       arch + "'");
    }
  } catch (const sgdstab::invalid_argument& e) {
    throw UsageError(std::string("--arch/--hidden: ") + e.what());
  }
}

}  // namespace

CnnProblem cnn_problem(const Args& args) {
  CnnProblem p;
  p.data = cnn_data(args, p.spec);
  p.spec.outputs = p.data.outputs();
  parse_arch(args, p.spec);
  return p;
}

cnn::GramOptions gram_options(const Args& args) {
  cnn::GramOptions g;
  apply_cli(args, g);  // --gram-chunk, --gram-memory (MiB)
  return g;
}

// CnnTrainOptions' table from the command line but its lr and batch, which
// the caller gives (cnn sweep trains at several); the batches seeded by --seed + 7.
cnn::CnnTrainOptions train_options(const Args& args, double lr, Index batch) {
  cnn::CnnTrainOptions o;
  for (const OptionField<cnn::CnnTrainOptions>& f : option_table<cnn::CnnTrainOptions>())
    if (f.cli != "lr" && f.cli != "batch") apply_cli_field(args, f, o);
  o.lr = lr;
  o.batch = batch;
  o.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 7;
  if (const std::optional<Momentum> m = momentum_option(args)) o.momentum = *m;
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
  minimizer_fields(j, res, "steps");
  j["loss_convention"] = std::string(kLossConvention) + " (torch MSELoss(mean) = (2/c) x this)";
}

// The residual vector (f - y, rows i*c + k) at the network's parameters.
VectorXd residual_vector(const cnn::Cnn& net, const Dataset& d) {
  const MatrixXd res = net.forward(d.inputs) - d.targets;
  VectorXd r(res.size());
  for (Index i = 0; i < res.rows(); ++i) r.segment(i * res.cols(), res.cols()) = res.row(i).transpose();
  return r;
}

namespace {
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
}  // namespace

void AlignmentLog::record(Index step, const cnn::Cnn& at) {
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

void AlignmentLog::record_final(Index step, const cnn::Cnn& at) {
  if (every >= 1 && step != last) {
    const Index keep = every;
    every = 1;
    record(step, at);
    every = keep;
  }
}

namespace {
// Writes the parameters atomically unless they are non-finite (then keeps the old file).
bool checkpoint(const std::string& path, const cnn::Cnn& net) {
  const VectorXd theta = net.parameters();
  if (!theta.allFinite()) return false;
  write_matrix(path, theta);
  return true;
}
}  // namespace

Index log_every_option(const Args& args) {
  const Index k = args.integer_or("log-every", 10);
  if (k < 1) throw UsageError("--log-every: K must be >= 1, got " + std::to_string(k));
  return k;
}

// Training with the options' extras: --init-params, progress on stderr,
// --checkpoint FILE every --checkpoint-every steps, --alignment-log FILE every
// --log-every steps. The paths written go to `files`.
MinimizeResult train(const Args& args, const CnnProblem& p, cnn::Cnn& net, cnn::CnnTrainOptions o, json& files,
                     std::ostream& err) {
  if (args.has("init-params")) set_parameters_from(args, "init-params", net);
  o.progress = progress_reporter(args, err, "sgdstab cnn: step");
  const Index ckpt_every = args.integer_or("checkpoint-every", 1000);
  if (ckpt_every < 1) throw UsageError("--checkpoint-every: K must be >= 1, got " + std::to_string(ckpt_every));
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
  log.record_final(res.report.iterations, net);
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
  res.report.status = res.max_residual <= res.tolerance ? Status::converged : Status::not_converged;
  res.report.message = res.converged() ? "loaded parameters interpolate" : "loaded parameters do not interpolate";
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

torch::Device device_option(const Args& args) {
  return cnn::torch_device(args.choice("device", Device::automatic));
}

json gram_json(const cnn::GramInfo& gi, double seconds, Index samples) {
  return {{"chunk", gi.chunk}, {"chunks", gi.chunks}, {"passes", gi.passes}, {"streamed", gi.streamed},
          {"seconds", seconds}, {"samples_per_second", static_cast<double>(samples) / std::max(seconds, 1e-9)}};
}

}  // namespace sgdstab::cli
