// `sgdstab cnn train|analyze`: the optional LibTorch module from the command line.
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.hpp"
#include "commands.hpp"
#include "problem.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;
using Eigen::MatrixXd;

namespace {

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
  if (arch.rfind("vgg:", 0) != 0) throw UsageError("--arch: expected vgg:C1,C2,..., got '" + arch + "'");
  p.spec.channels = int_list(arch.substr(4), "--arch");
  p.spec.hidden = int_list(args.str_or("hidden", "64"), "--hidden");
  p.spec.outputs = p.data.outputs();
  try {
    p.spec.validate();
  } catch (const sgdstab::invalid_argument& e) {
    throw UsageError(std::string("--arch/--hidden: ") + e.what());
  }
  return p;
}

}  // namespace

int cmd_cnn(const Args& args, std::ostream& out, std::ostream& err) {
  const std::string& sub = args.command();
  if (sub != "train" && sub != "analyze") throw UsageError("cnn: expected `cnn train` or `cnn analyze`, got '" + sub + "'");
  args.allow_only({"data", "data-dir", "classes", "per-class", "scaling", "arch", "hidden", "lr", "batch", "sampling",
                   "device", "seed", "max-steps", "residual-tol", "save-jacobian", "save-gram", "save-params",
                   "batches", "allow-residual", "quiet"});
  const auto t0 = std::chrono::steady_clock::now();
  CnnProblem p = cnn_problem(args);
  const torch::Device device = cnn::resolve_device(cnn::parse_device(args.str_or("device", "auto")));
  cnn::Cnn net(p.spec, static_cast<std::uint64_t>(args.integer_or("seed", 0)), device);
  cnn::CnnTrainOptions o;
  o.lr = args.number("lr");
  o.batch = args.integer("batch");
  o.schedule = parse_schedule(args.str_or("sampling", "without"));
  o.max_steps = args.integer_or("max-steps", 100000);
  o.residual_tolerance = args.number_or("residual-tol", 1e-6);
  o.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 7;
  const MinimizeResult res = cnn::train_cnn(net, p.data.inputs, p.data.targets, o);
  json j;
  j["data"] = p.data.description;
  j["samples"] = p.data.samples();
  j["outputs"] = p.data.outputs();
  j["params"] = net.num_parameters();
  j["arch"] = {{"channels", p.spec.channels}, {"hidden", p.spec.hidden},
               {"image", {p.spec.in_channels, p.spec.height, p.spec.width}}};
  j["device"] = device.str();
  j["lr"] = o.lr;
  j["batch"] = o.batch;
  j["sampling"] = to_string(o.schedule);
  j["converged"] = res.converged;
  j["steps"] = res.iterations;
  j["loss"] = res.loss;
  j["max_residual"] = res.max_residual;
  j["residual_tolerance"] = res.tolerance;
  j["message"] = res.message;
  j["loss_convention"] = "1/2 squared error, mean over samples (torch MSELoss(mean) = (2/c) x this)";
  json files = json::object();
  if (args.has("save-params")) {
    write_matrix(args.str("save-params"), net.parameters());
    files["params"] = args.str("save-params");
  }
  MatrixXd gram;
  const bool want_gram = args.has("save-gram") || args.has("save-jacobian") || sub == "analyze";
  if (want_gram) {
    const MatrixXd jac = net.jacobian(p.data.inputs);
    if (args.has("save-jacobian")) {
      write_matrix(args.str("save-jacobian"), jac);
      files["jacobian"] = args.str("save-jacobian");
    }
    gram = jac * jac.transpose();
    if (args.has("save-gram")) {
      write_matrix(args.str("save-gram"), gram);
      files["gram"] = args.str("save-gram");
    }
  }
  j["files"] = files;
  if (sub == "analyze") {
    if (!res.converged && !args.flag("allow-residual")) {
      j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      out << j.dump(2) << "\n";
      err << "sgdstab: no interpolating minimum reached (" << res.message << "); --allow-residual analyzes anyway\n";
      return 3;
    }
    const Geometry g = Geometry::from_gram(gram, p.data.outputs());
    const Sampling s = closed_form(o.schedule).value_or(Sampling::without_replacement);
    const std::vector<Index> batches = batches_option(args, g.samples());
    const double mu_star = worst_case_alignment(g).mu_star;
    json table = json::array();
    bool ok = true;
    for (const ThresholdResult& r : threshold_curve(g, batches, s)) {
      const StabilityBounds b = stability_bounds(g, r.batch, s, {}, &r, mu_star);
      json row = {{"batch", r.batch}, {"eta_star", r.eta_star}, {"converged", r.converged()},
                  {"eta_gd", b.eta_gd}, {"eta_sufficient", b.eta_sufficient},
                  {"eta_necessary_rank1", b.eta_necessary_rank1}, {"eta_necessary_trace", b.eta_necessary_trace},
                  {"eta_alignment", b.eta_alignment ? json(*b.eta_alignment) : json(nullptr)}};
      ok = ok && r.converged();
      table.push_back(row);
    }
    j["analysis_sampling"] = to_string(s);
    j["rank"] = g.rank();
    j["lambda_max"] = g.lambda_max();
    j["hessian_frobenius"] = g.hessian_frobenius();
    j["mu_star"] = mu_star;
    j["points"] = table;
    j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out << j.dump(2) << "\n";
    if (!ok) {
      err << "sgdstab: an eigensolver did not converge\n";
      return 3;
    }
    return 0;
  }
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out << j.dump(2) << "\n";
  return res.converged ? 0 : 3;
}

}  // namespace sgdstab::cli
