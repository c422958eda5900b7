#include "problem.hpp"

#include "inputs.hpp"
#include "option_table.hpp"
#include "report.hpp"

#include <unistd.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <sstream>

#include "sgdstab/bounds.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;
using Eigen::MatrixXd;

namespace {

std::vector<Index> index_list(const Args& args, const std::string& key) {
  std::vector<Index> out;
  for (long long v : args.integer_list(key)) out.push_back(static_cast<Index>(v));
  return out;
}

std::vector<Activation> activations(const Args& args) {
  std::vector<Activation> out;
  const std::string text = args.str_or("activation", "relu");
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse<Activation>(item));
  if (text.empty() || text.back() == ',') throw UsageError("--activation: empty entry in '" + text + "'");
  return out;
}

}  // namespace

std::string trainer_name(const Args& args, const MlpSpec& spec) {
  return args.str_or("trainer", spec.linear_in_parameters() ? "min-norm" : "gauss-newton");
}

namespace {

// Options that mean nothing for the chosen data source, trainer or model are
// errors, not silently ignored.
void check_relevant(const Args& args, const MlpSpec& spec, const std::string& command) {
  const std::string data = args.str_or("data", "");
  const bool images = data == "fashion-mnist" || data == "cifar10";
  const bool synthetic = data == "gaussian" || data == "teacher";
  const std::string trainer = trainer_name(args, spec);
  auto forbid = [&](const std::string& opt, bool bad, const std::string& why) {
    if (bad && (args.has(opt) || args.flag(opt))) throw UsageError("--" + opt + " " + why);
  };
  forbid("samples", !(synthetic || data.rfind("1d:", 0) == 0), "applies to --data gaussian, teacher or 1d:F only");
  forbid("input-spectrum", !synthetic, "applies to --data gaussian or teacher only");
  forbid("teacher-widths", data != "teacher", "applies to --data teacher only");
  for (const char* opt : {"classes", "per-class", "scaling", "split", "data-dir"})
    forbid(opt, !images, "applies to --data fashion-mnist or cifar10 only");
  forbid("activation", spec.widths.size() == 2, "needs a hidden layer (--widths with 3 or more entries)");
  forbid("lr", trainer != "gd" && trainer != "sgd" && command != "escape",
         "applies to --trainer gd or sgd only (and to escape's runs)");
  forbid("max-steps", trainer != "gd" && trainer != "sgd", "applies to --trainer gd or sgd only");
  forbid("batch", trainer != "sgd" && command != "escape", "applies to --trainer sgd only (gd is full-batch)");
  forbid("train-sampling", trainer != "sgd", "applies to --trainer sgd only");
  forbid("max-iter", trainer != "gauss-newton", "applies to --trainer gauss-newton only");
  forbid("alignment-log", trainer != "gd" && trainer != "sgd", "applies to --trainer gd or sgd only");
  forbid("allow-residual", command != "analyze", "applies to analyze only");
  forbid("quiet", command != "escape" && command != "montecarlo", "applies to escape and montecarlo only");
  forbid("sampling", command == "minimum" && trainer != "sgd",
         "is the mini-batch scheme of --trainer sgd (or of the analysis, in analyze)");
}

MlpSpec model_spec(const Args& args) {
  if (!args.has("widths")) throw UsageError("--widths D,M,...,C is required (layer widths, input to output)");
  MlpSpec spec;
  spec.widths = index_list(args, "widths");
  if (spec.widths.size() < 2) throw UsageError("--widths needs at least D,C");
  spec.bias = args.flag("bias");
  spec.parametrization = args.choice("parametrization", Parametrization::standard);
  spec.init = args.choice("init", Init::he);
  spec.output_scale = args.number_or("output-scale", 1.0);
  const std::string model = args.str_or("model", "mlp");
  const std::size_t layers = spec.widths.size() - 1;
  if (spec.widths.size() > 2) spec.activations = activations(args);
  spec.trainable.assign(layers, true);
  if (model == "linear") {
    if (spec.widths.size() != 2) throw UsageError("--model linear takes --widths D,C");
  } else if (model == "rfm") {
    if (spec.widths.size() != 3) throw UsageError("--model rfm takes --widths D,M,C");
    spec.trainable[0] = false;
  } else if (model != "mlp") {
    throw UsageError("--model: expected mlp, linear or rfm, got '" + model + "'");
  }
  if (args.has("frozen")) {
    for (Index l : index_list(args, "frozen")) {
      if (l < 0 || static_cast<std::size_t>(l) >= layers)
        throw UsageError("--frozen: layer indices are 0.." + std::to_string(layers - 1) + ", got " +
                         std::to_string(l));
      spec.trainable[static_cast<std::size_t>(l)] = false;
    }
  }
  try {
    spec.validate();
  } catch (const sgdstab::invalid_argument& e) {
    throw UsageError(std::string("model options (--widths, --activation, --frozen, --output-scale): ") + e.what());
  }
  return spec;
}

Eigen::VectorXd input_spectrum(const Args& args, Index d) {
  const std::string s = args.str_or("input-spectrum", "isotropic");
  if (s == "isotropic") return Eigen::VectorXd::Ones(d);
  if (s.rfind("power:", 0) == 0) return power_law_spectrum(d, parse_number(s.substr(6), "--input-spectrum power:ALPHA"));
  throw UsageError("--input-spectrum: expected isotropic or power:ALPHA, got '" + s + "'");
}

Dataset image_data(const Args& args, const std::string& name) {
  const std::string split = args.str_or("split", "train");
  if (split != "train" && split != "test") throw UsageError("--split: expected train or test, got '" + split + "'");
  const bool train = split == "train";
  LabeledImages images;
  if (name == "fashion-mnist") {
    images = read_fashion_mnist(args.has("data-dir") ? args.str("data-dir") : find_fashion_mnist_directory(), train);
  } else {
    if (!args.has("data-dir"))
      throw UsageError("--data cifar10 needs --data-dir DIR: the cifar-10-batches-bin directory extracted from "
                       "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
    images = read_cifar10(args.str("data-dir"), train);
  }
  Selection sel;
  if (args.has("classes"))
    for (long long c : args.integer_list("classes")) sel.classes.push_back(static_cast<int>(c));
  sel.per_class = args.integer_or("per-class", 0);
  return select_classes(images, sel, args.choice("scaling", PixelScaling::unit), name + " " + split);
}

Dataset make_data(const Args& args, const MlpSpec& spec, std::uint64_t seed) {
  if (!args.has("data")) throw UsageError("--data is required (gaussian, teacher, fashion-mnist, cifar10, csv:PATH, ...)");
  const std::string name = args.str("data");
  const Index d = spec.inputs(), c = spec.outputs();
  const Index n = args.integer_or("samples", 64);
  if (name == "fashion-mnist" || name == "cifar10") return image_data(args, name);
  if (name.rfind("csv:", 0) == 0 || name.rfind("npy:", 0) == 0) return read_table_dataset(name.substr(4), c);
  if (name.rfind("curvatures:", 0) == 0) {
    std::vector<double> a;
    std::stringstream ss(name.substr(11));
    std::string item;
    while (std::getline(ss, item, ',')) a.push_back(parse_number(item, "--data curvatures:A1,A2,..."));
    return curvature_dataset(Eigen::Map<Eigen::VectorXd>(a.data(), static_cast<Index>(a.size())));
  }
  if (name.rfind("1d:", 0) == 0) return regression_1d(n, name.substr(3), seed + 1);
  if (n < 1) throw UsageError("--samples: N must be >= 1, got " + std::to_string(n));
  Dataset ds;
  ds.inputs = gaussian_inputs(n, input_spectrum(args, d), seed + 1);
  if (name == "gaussian") {
    ds.targets = gaussian_inputs(n, c, seed + 2);
    ds.description = "gaussian: n = " + std::to_string(n) + " inputs N(0, S), targets iid N(0, 1)";
  } else if (name == "teacher") {
    MlpSpec teacher = spec;
    teacher.trainable.clear();
    if (args.has("teacher-widths")) {
      teacher.widths = index_list(args, "teacher-widths");
      if (teacher.widths.front() != d || teacher.widths.back() != c)
        throw UsageError("--teacher-widths must start with D = " + std::to_string(d) + " and end with C = " +
                         std::to_string(c));
      teacher.activations = teacher.widths.size() > 2 ? activations(args) : std::vector<Activation>();
      if (teacher.activations.size() > 1 && teacher.activations.size() != teacher.widths.size() - 2)
        throw UsageError("--teacher-widths has " + std::to_string(teacher.widths.size() - 2) +
                         " hidden layers but --activation lists " + std::to_string(teacher.activations.size()) +
                         " activations: give one activation for all layers");
    }
    ds.targets = teacher_targets(teacher, ds.inputs, seed + 3);
    ds.description = "teacher-student: n = " + std::to_string(n) + " inputs N(0, S), targets of a random teacher";
  } else {
    throw UsageError("--data: expected gaussian, teacher, fashion-mnist, cifar10, csv:PATH, npy:PATH, "
                     "curvatures:A1,A2,... or 1d:sine|abs|quadratic|step, got '" + name + "'");
  }
  return ds;
}

}  // namespace

Problem build_problem(const Args& args) {
  const MlpSpec spec = model_spec(args);
  check_relevant(args, spec, args.command());
  const long long seed = args.integer_or("seed", 0);
  if (seed < 0) throw UsageError("--seed: S must be >= 0, got " + std::to_string(seed));
  Dataset data = make_data(args, spec, static_cast<std::uint64_t>(seed));
  data.validate();
  if (data.input_dim() != spec.inputs() || data.outputs() != spec.outputs())
    throw sgdstab::invalid_argument("--widths: the data have d = " + std::to_string(data.input_dim()) +
                                    " inputs and c = " + std::to_string(data.outputs()) +
                                    " outputs, but the widths start with " + std::to_string(spec.inputs()) +
                                    " and end with " + std::to_string(spec.outputs()));
  return Problem{std::move(data), Mlp(spec, static_cast<std::uint64_t>(seed)), static_cast<std::uint64_t>(seed)};
}

std::vector<Index> batches_option(const Args& args, Index samples) {
  if (!args.has("batches")) return default_batches(samples);
  std::vector<Index> batches;
  for (long long b : args.integer_list("batches")) {
    check_batch(static_cast<Index>(b), samples, "--batches");
    batches.push_back(static_cast<Index>(b));
  }
  return batches;
}

namespace {

// The gd and sgd trainers' options: TrainOptions' table from the command
// line, gd full-batch, the scheme --train-sampling or else --sampling, the
// batches seeded by --seed + 7.
TrainOptions sgd_trainer_options(const Args& args, const std::string& trainer, Index samples) {
  TrainOptions o;
  o.sampling = args.choice("sampling", Sampling::without_replacement);
  if (!args.has("lr")) throw UsageError("missing required option --lr (--trainer " + trainer + ")");
  if (trainer == "sgd" && !args.has("batch")) throw UsageError("missing required option --batch (--trainer sgd)");
  if (args.has("log-every") && args.integer("log-every") < 1)  // the table's 0 is its default, one epoch
    throw UsageError("--log-every: K must be >= 1, got " + args.str("log-every"));
  apply_cli(args, o);
  if (trainer == "gd") {
    o.batch = samples;  // --batch is escape's runs' batch, not gd's
    o.sampling = Sampling::without_replacement;
  }
  check_batch(o.batch, samples, "--batch");
  o.seed = static_cast<std::uint64_t>(args.integer_or("seed", 0)) + 7;
  return o;
}

// Trains with gd or sgd, logging mu, L and |G|_F to --alignment-log when given.
MinimizeResult train_to_minimum(const Args& args, Problem& p, const std::string& trainer) {
  const MatrixXd& x = p.data.inputs;
  const MatrixXd& y = p.data.targets;
  TrainOptions o = sgd_trainer_options(args, trainer, p.data.samples());
  // --momentum trains with momentum (gd, sgd); `minimum` refuses it for the
  // other trainers, `escape` uses it for its runs and `analyze` for its
  // curve whatever the trainer.
  if (args.has("momentum") || args.has("nesterov")) o.momentum = *momentum_option(args);
  p.trainer_options = options_json(o);
  std::vector<AlignmentSample> log;
  if (args.has("alignment-log"))
    o.observer = [&](Index step, const Mlp& model) { log.push_back(alignment_at(model, x, y, step)); };
  const MinimizeResult res = train_sgd(p.model, x, y, o);
  if (args.has("alignment-log")) {
    Eigen::MatrixXd table(static_cast<Index>(log.size()), 4);
    for (std::size_t k = 0; k < log.size(); ++k)
      table.row(static_cast<Index>(k)) << static_cast<double>(log[k].step), log[k].loss, log[k].mu, log[k].g_frobenius;
    write_matrix(args.str("alignment-log"), table);
    p.alignment_log = args.str("alignment-log");
  }
  return res;
}

}  // namespace

MinimizeResult reach_minimum(const Args& args, Problem& p) {
  const std::string trainer = trainer_name(args, p.model.spec());
  if (trainer == "min-norm" || trainer == "gauss-newton") {
    MinimizeOptions o;
    apply_cli(args, o);  // --residual-tol, --max-iter
    p.trainer_options = options_json(o);
    return trainer == "min-norm" ? minimum_norm_solution(p.model, p.data.inputs, p.data.targets, o)
                                 : gauss_newton(p.model, p.data.inputs, p.data.targets, o);
  }
  if (trainer == "gd" || trainer == "sgd") return train_to_minimum(args, p, trainer);
  throw UsageError("--trainer: expected min-norm, gauss-newton, gd or sgd, got '" + trainer + "'");
}

void save_requested(const Args& args, const Problem& p, json& j) {
  json files = json::object();
  if (args.has("save-params")) {
    write_matrix(args.str("save-params"), p.model.parameters());
    files["params"] = args.str("save-params");
  }
  if (args.has("save-jacobian")) {
    write_matrix(args.str("save-jacobian"), p.model.jacobian(p.data.inputs));
    files["jacobian"] = args.str("save-jacobian");
  }
  if (args.has("save-gram")) {
    write_matrix(args.str("save-gram"), p.model.gram(p.data.inputs));
    files["gram"] = args.str("save-gram");
  }
  if (!p.alignment_log.empty()) {
    files["alignment_log"] = p.alignment_log;
    files["alignment_log_columns"] = {"step", "loss", "mu", "g_frobenius"};
  }
  j["files"] = files;
}

// Progress on stderr for runs longer than two seconds, only when stderr is a
// terminal and --quiet was not given; redrawn at most twice a second.
std::function<void(Index, Index)> progress_reporter(const Args& args, std::ostream& err, const std::string& what) {
  if (args.flag("quiet") || !::isatty(STDERR_FILENO)) return {};
  const auto start = std::chrono::steady_clock::now();
  auto last = std::make_shared<double>(0.0);
  return [&err, what, start, last](Index done, Index total) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (t < 2.0 || (done < total && t - *last < 0.5)) return;  // short runs print nothing
    *last = t;
    err << "\r" << what << " " << done << "/" << total << " (" << static_cast<int>(t) << " s)" << (done == total ? "\n" : "")
        << std::flush;
  };
}

}  // namespace sgdstab::cli
