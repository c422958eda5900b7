// The sgdstab program: commands and options declared once, on CLI11.
#include "app.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iterator>
#include <functional>
#include <initializer_list>
#include <memory>
#include <new>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "option_table.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/cnn_options.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/escape.hpp"
#include "sgdstab/interrupt.hpp"
#include "sgdstab/minimize.hpp"

namespace sgdstab::cli {

namespace {

using Handler = std::function<int(const Args&, std::ostream&, std::ostream&)>;

struct Opt {
  const char* name;
  const char* help;
};

// Every command: its name (with its parent for `cnn train`), CLI11 app and handler.
struct Command {
  std::string name;
  CLI::App* app;
  Handler run;
};

class Program {
 public:
  Program();
  CLI::App& root() { return root_; }
  const Command* find(const std::string& name) const {
    for (const Command& c : commands_)
      if (c.name == name) return &c;
    return nullptr;
  }
  bool is_flag(const std::string& name) const { return flags_.count(name) != 0; }

 private:
  CLI::App* command(CLI::App& parent, const std::string& name, const std::string& help, Handler run,
                    const std::string& prefix = "");
  void options(CLI::App* app, std::initializer_list<Opt> list);
  void flags(CLI::App* app, std::initializer_list<Opt> list);
  void geometry_options(CLI::App* app);
  template <class S>
  void table_options(CLI::App* app, std::initializer_list<const char*> only = {},
                     std::initializer_list<Opt> help = {});
  void solver_options(CLI::App* app, std::initializer_list<const char*> only = {},
                      std::initializer_list<Opt> help = {}) {
    table_options<SolverOptions>(app, only, help);
  }
  void eigen_options(CLI::App* app);
  void momentum_options(CLI::App* app);
  void optimizer_options(CLI::App* app);
  void problem_options(CLI::App* app);
  void cnn_options(CLI::App* app);
  void cnn_train_options(CLI::App* app);
  void exact_commands();
  void analysis_commands();
  void problem_commands();
  void cnn_commands();

  CLI::App root_;
  std::vector<Command> commands_;
  std::set<std::string> flags_;
};

const char* kDescription =
    "Exact mean-square linear stability of SGD at an interpolating minimum of the square loss\n"
    "(loss convention: 1/2 |f - y|^2, mean over samples). One JSON object on stdout.";

const char* kInputs =
    "Input files: CSV (comma-separated, no header) or .npy (2-D float64/float32).\n"
    "A Jacobian has n*C rows (row i*C + k = d f_k(x_i) / d theta) and p columns;\n"
    "a Gram is the (n C) x (n C) matrix J J^T in the same order.\n"
    "`sgdstab COMMAND --help` lists a command's options.\n";

void Program::options(CLI::App* app, std::initializer_list<Opt> list) {
  for (const Opt& o : list) app->add_option(std::string("--") + o.name, o.help);
}

void Program::flags(CLI::App* app, std::initializer_list<Opt> list) {
  for (const Opt& o : list) {
    app->add_flag(std::string("--") + o.name, o.help)->disable_flag_override();
    flags_.insert(o.name);
  }
}

CLI::App* Program::command(CLI::App& parent, const std::string& name, const std::string& help, Handler run,
                           const std::string& prefix) {
  CLI::App* app = parent.add_subcommand(name, help);
  app->allow_extras();  // reported by name after parsing ("unknown option --x for 'threshold'")
  commands_.push_back({prefix + name, app, std::move(run)});
  return app;
}

void Program::geometry_options(CLI::App* app) {
  options(app, {{"jacobian", "FILE: the (n C) x p per-sample Jacobian (CSV or .npy)"},
                {"gram", "FILE: the (n C) x (n C) Gram J J^T (CSV or .npy); needs --outputs C when C > 1"},
                {"outputs", "C: outputs per sample (default 1)"},
                {"curvature", "FILE: per-sample loss curvature S_i, the (n C) x C matrix of the S_i stacked (a "
                              "weighted square loss: w_i I); J -> S^{1/2} J (theory/loss_curvature.md)"},
                {"softmax", "FILE: n x C softmax probabilities p_i at the point: cross-entropy, S_i = diag(p_i) - "
                            "p_i p_i^T, lr in torch's CrossEntropyLoss units (theory/loss_curvature.md)"}});
  table_options<ReductionOptions>(app);  // --rank-tol, --space
  app->get_option("--gram")->excludes("--jacobian");
}

void Program::momentum_options(CLI::App* app) { table_options<Momentum>(app); }  // --momentum, --nesterov

void Program::optimizer_options(CLI::App* app) {
  options(app, {{"optimizer", "sgd|rmsprop|adam|adamw: the update, with a frozen preconditioner for the adaptive "
                              "ones; adam's --momentum is beta1 (default 0.9), lr is the optimizer's "
                              "(theory/adaptive.md; default sgd)"},
                {"preconditioner", "FILE: the p entries of P = sqrt(v_hat) + eps (one column; --jacobian only: with "
                                   "--gram, fold P into the Gram)"}});
}

// The options of S's table (include/sgdstab/options.hpp) that are on the
// command line, with their defaults; `only` picks some (all when empty),
// `help` narrows the words of some for this command.
template <class S>
void Program::table_options(CLI::App* app, std::initializer_list<const char*> only, std::initializer_list<Opt> help) {
  for (const OptionField<S>& f : option_table<S>()) {
    // Another table's field may have registered it (--residual-tol: the minimizers' and the trainer's).
    if (f.cli.empty() || app->get_option_no_throw("--" + f.cli) != nullptr) continue;
    if (only.size() != 0 &&
        std::none_of(only.begin(), only.end(), [&](const char* name) { return f.cli == name; }))
      continue;
    std::string words;
    for (const Opt& o : help)
      if (f.cli == o.name) words = o.help;
    if (is_cli_flag(f)) {
      app->add_flag("--" + f.cli)->description(cli_help(f, words))->disable_flag_override();
      flags_.insert(f.cli);
    } else {
      app->add_option("--" + f.cli)->description(cli_help(f, words));
    }
  }
}

// threshold, radius, curve, bounds: the scheme, every solver option, the direction file.
void Program::eigen_options(CLI::App* app) {
  options(app, {{"sampling", "without|with|bernoulli: the mini-batch scheme (default without)"}});
  solver_options(app);
  options(app, {{"direction", "FILE: also write the top eigen-direction (r x r, reduced coordinates)"}});
}

void Program::problem_options(CLI::App* app) {
  options(app,
          {{"widths", "D,M,...,C: layer widths, input to output (required)"},
           {"model", "mlp|linear|rfm: rfm freezes layer 0; linear is --widths D,C (default mlp)"},
           {"activation", "A[,A...]: identity|relu|tanh|erf|softplus per hidden layer (default relu)"},
           {"frozen", "L[,L...]: 0-based layers kept at their initialization"},
           {"parametrization", "standard|ntk|mean-field (default standard)"},
           {"init", "he|lecun: weight variance gain 2 or 1 (default he)"},
           {"output-scale", "X: extra multiplier on the output layer (default 1)"},
           {"seed", "S: initialization, data and batches (default 0)"},
           {"data", "gaussian|teacher|fashion-mnist|cifar10|csv:PATH|npy:PATH|curvatures:A1,A2,...|"
                    "1d:sine|abs|quadratic|step"},
           {"samples", "N: samples of --data gaussian, teacher or 1d:F"},
           {"input-spectrum", "isotropic|power:ALPHA: covariance of --data gaussian or teacher"},
           {"teacher-widths", "D,...,C: the teacher network of --data teacher"},
           {"classes", "0,1,2,3: classes of --data fashion-mnist or cifar10"},
           {"per-class", "K: samples per class"},
           {"scaling", "unit|none|standardize|center: pixel scaling"},
           {"split", "train|test"},
           {"data-dir", "DIR: Fashion-MNIST files (default: the Debian package dataset-fashion-mnist) or "
                        "CIFAR-10's cifar-10-batches-bin"},
           {"trainer", "min-norm|gauss-newton|gd|sgd (default min-norm when only the last layer trains, "
                       "gauss-newton otherwise)"},
           {"sampling", "without|with|bernoulli: the analysis's scheme and the sgd trainer's default"}});
  table_options<MinimizeOptions>(app);  // --residual-tol, --max-iter
  table_options<TrainOptions>(app, {},  // --lr, --batch, --train-sampling, --max-steps, --log-every
                              {{"lr", "learning rate of the gd and sgd trainers; escape: the runs' rate (default none)"},
                               {"batch", "batch size of the sgd trainer; escape: the runs' batch size (default none)"},
                               {"train-sampling", "the sgd trainer's scheme (default --sampling's)"},
                               {"log-every", "steps between --alignment-log rows, >= 1 (default one epoch)"}});
  options(app, {{"save-jacobian", "FILE: write the Jacobian at the minimum (.npy or CSV by extension)"},
                {"save-gram", "FILE: write the Gram at the minimum"},
                {"save-params", "FILE: write theta at the minimum"},
                {"alignment-log", "FILE: log step, loss, mu, |G|_F along gd/sgd training (CSV)"}});
  flags(app, {{"bias", "layers have biases"},
              {"allow-residual", "analyze: go on at a point that does not interpolate"},
              {"quiet", "no progress on stderr"}});
  app->get_option("--log-every")->needs("--alignment-log");
}

void Program::cnn_options(CLI::App* app) {
  options(app, {{"data", "synthetic|fashion-mnist|cifar10:DIR (default synthetic)"},
                {"data-dir", "DIR: Fashion-MNIST files"},
                {"classes", "0,1: classes (default 0,1)"},
                {"per-class", "N: samples per class (default 16)"},
                {"scaling", "unit|none|standardize|center: pixel scaling (image data only)"},
                {"arch", "vgg:8,16 | vgg:8,M,16,16,M | vgg11[/DIV]: convolution widths and pools"},
                {"hidden", "64[,...]: widths of the fully connected layers"},
                {"device", "auto|cpu|cuda (default auto)"},
                {"seed", "S: initialization, data and batches (default 0)"}});
  table_options<cnn::CnnTrainOptions>(app, {"sampling", "max-steps", "residual-tol"});
  table_options<cnn::GramOptions>(app);  // --gram-chunk, --gram-memory
  flags(app, {{"quiet", "no progress on stderr"}});
}

void Program::cnn_train_options(CLI::App* app) {
  table_options<cnn::CnnTrainOptions>(app, {"lr", "batch"});
  options(app, {{"init-params", "F: start from these parameters (resume)"},
                {"checkpoint", "F: write the parameters periodically (atomic)"},
                {"checkpoint-every", "K: steps between checkpoints"},
                {"alignment-log", "F: log step, loss, mu, |G|_F along training (CSV)"},
                {"log-every", "K: steps between --alignment-log rows"},
                {"save-jacobian", "F: write the Jacobian at the end"},
                {"save-gram", "F: write the Gram at the end"},
                {"save-params", "F: write the parameters at the end"}});
  app->get_option("--checkpoint-every")->needs("--checkpoint");
  app->get_option("--log-every")->needs("--alignment-log");
}

Program::Program() : root_(kDescription, "sgdstab") {
  root_.footer(std::string(kInputs) + "\n" + exit_code_help());
  root_.set_help_flag("-h,--help", "print this help and exit");
  // Every value is kept, so that reject_repeats names an option given twice.
  root_.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);

  exact_commands();
  analysis_commands();
  problem_commands();
  cnn_commands();
}

// threshold, radius, curve, region, demo: the exact eta* and rho.
void Program::exact_commands() {
  CLI::App* c = command(root_, "threshold", "eta*(B): stable iff lr <= eta*", cmd_threshold);
  geometry_options(c);
  eigen_options(c);
  options(c, {{"batch", "B: batch size, 1 <= B <= n"}, {"weight-decay", "LAMBDA: L2 weight decay, theta <- theta - lr (g_B + LAMBDA theta) in the library's loss "
                               "convention (PyTorch SGD(lr, weight_decay=wd) on MSELoss: --lr 2 lr / C, LAMBDA = wd C / "
                               "2); with --momentum the buffer takes g_B + LAMBDA theta, as torch.optim.SGD(momentum, weight_decay) "
                               "(theory/weight_decay.md, theory/momentum.md section 8); with --optimizer adamw AdamW's decoupled decay theta <- (1 - lr LAMBDA) theta "
                               "before the Adam step (theory/adaptive.md section 5); with --optimizer adam|rmsprop "
                               "their own L2 decay through P^{-1}, from --jacobian and --preconditioner (section 6) "
                               "(default 0)"}});
  momentum_options(c);
  optimizer_options(c);
  options(c, {{"scan", "K: with --momentum, also evaluate kappa at K points of (0, eta_mean) to find "
                       "further stable intervals (default 0)"}});

  c = command(root_, "radius", "rho(T) at (lr, B): stable iff rho <= 1", cmd_radius);
  geometry_options(c);
  eigen_options(c);
  options(c, {{"batch", "B: batch size"}, {"lr", "ETA: learning rate"}, {"weight-decay", "LAMBDA: L2 weight decay, theta <- theta - lr (g_B + LAMBDA theta) in the library's loss "
                               "convention (PyTorch SGD(lr, weight_decay=wd) on MSELoss: --lr 2 lr / C, LAMBDA = wd C / "
                               "2); with --momentum the buffer takes g_B + LAMBDA theta, as torch.optim.SGD(momentum, weight_decay) "
                               "(theory/weight_decay.md, theory/momentum.md section 8); with --optimizer adamw AdamW's decoupled decay theta <- (1 - lr LAMBDA) theta "
                               "before the Adam step (theory/adaptive.md section 5); with --optimizer adam|rmsprop "
                               "their own L2 decay through P^{-1}, from --jacobian and --preconditioner (section 6) "
                               "(default 0)"}});
  momentum_options(c);
  optimizer_options(c);

  c = command(root_, "curve", "eta*(B) for several B", cmd_curve);
  geometry_options(c);
  eigen_options(c);
  options(c, {{"batches", "1,2,4,...: batch sizes (default powers of two below n, and n)"}, {"weight-decay", "LAMBDA: L2 weight decay, theta <- theta - lr (g_B + LAMBDA theta) in the library's loss "
                               "convention (PyTorch SGD(lr, weight_decay=wd) on MSELoss: --lr 2 lr / C, LAMBDA = wd C / "
                               "2); with --momentum the buffer takes g_B + LAMBDA theta, as torch.optim.SGD(momentum, weight_decay) "
                               "(theory/weight_decay.md, theory/momentum.md section 8); with --optimizer adamw AdamW's decoupled decay theta <- (1 - lr LAMBDA) theta "
                               "before the Adam step (theory/adaptive.md section 5); with --optimizer adam|rmsprop "
                               "their own L2 decay through P^{-1}, from --jacobian and --preconditioner (section 6) "
                               "(default 0)"}});
  momentum_options(c);
  optimizer_options(c);

  c = command(root_, "region", "eta*(B) for every scheme and batch size at once, certified, with a picture",
              cmd_region);
  geometry_options(c);
  options(c, {{"sampling", "S[,S...]: schemes among without|with|bernoulli (default all three)"},
              {"batches", "1,2,4,...: batch sizes (default powers of two below n, and n)"}});
  solver_options(c, {},
                 {{"method", "dense builds R (m applications); lanczos shares one subspace"},
                  {"tol", "relative width of each certified interval"},
                  {"ncv", "vectors in the shared subspace (default 0: up to 64, as memory allows)"},
                  {"device", "where the operator applications run"}});
  options(c, {{"plot", "FILE.svg: write the picture (eta against B, bands, bounds, marks)"},
              {"mark", "LR,B: a (learning rate, batch size) to judge and draw; repeatable"},
              {"engine", "auto|exact|band: exact eta*(B), or certified bands eta_low <= eta*(B) <= eta_high from "
                         "products (theory/band.md, section 7); auto: exact when the rank is at most "
                         "--exact-max-rank and its memory fits, the band otherwise (default auto)"},
              {"exact-max-rank", "R: the largest rank auto gives the exact engine (default 4096)"},
              {"seed", "S: the random start vectors of the band engine (default 1)"}});
  table_options<BandOptions>(c);  // the band engine's --band-subspace, --band-lanczos, --band-delta, ...
  options(c, {{"weight-decay", "LAMBDA: L2 weight decay (as in threshold); plain SGD: without and with replacement only "
                               "(the default schemes then); with --momentum or --optimizer adam|rmsprop (their own L2 "
                               "decay, from --jacobian and --preconditioner) every scheme; exact engine (default 0)"}});
  momentum_options(c);
  optimizer_options(c);

  c = command(root_, "demo", "eta*(B) of a built-in random-feature regression problem", cmd_demo);
  options(c, {{"sampling", "without|with|bernoulli"}});
  solver_options(c, {"method", "tol", "ncv"});
  options(c, {{"plot", "FILE.svg: also write the stability region of all three schemes"}});
}

// bounds, alignment, montecarlo: the bounds, the alignment and the Monte Carlo cross-check.
void Program::analysis_commands() {
  CLI::App* c = command(root_, "bounds", "eta*(B) beside every known bound (GD, Wu-Ma-E, Mulayoff-Michaeli, alignment)",
              cmd_bounds);
  geometry_options(c);
  eigen_options(c);
  options(c, {{"batch", "B: batch size"}});

  c = command(root_, "band", "a certified band eta_low <= eta*(B) <= eta_high from a few applications (theory/band.md)",
              cmd_band);
  geometry_options(c);
  options(c, {{"sampling", "without|with|bernoulli: the mini-batch scheme (default without)"},
              {"batch", "B: batch size, 1 <= B <= n"},
              {"seed", "S: the random start vectors of --matrix-free (default 1)"}});
  flags(c, {{"matrix-free", "from Jacobian products only: eta_high from a parameter subspace, eta_low from "
                            "Wu-Ma-E's X = Pi bound with Lanczos (certified or probabilistic; theory/band.md, section 5)"}});
  table_options<BandOptions>(c);  // --band-tol, --top-vectors, --band-steps, --band-subspace, --band-lanczos, --band-delta
  momentum_options(c);  // --momentum, --nesterov: the momentum band (theory/band.md, section 6)

  c = command(root_, "alignment",
              "the alignment mu of SGD noise at residuals, or mu_lin(delta), and mu_*", cmd_alignment);
  geometry_options(c);
  options(c, {{"residual", "FILE: residuals f_i - y_i (n C values)"},
              {"direction", "FILE: delta in R^p (needs --jacobian)"}});
  c->get_option("--direction")->excludes("--residual");

  c = command(root_, "covariance",
              "the stationary covariance of SGD at a minimum that does not interpolate (theory/covariance.md)",
              cmd_covariance);
  geometry_options(c);
  options(c, {{"residual", "FILE: residuals f(x_i) - y_i at the minimum (n C values; their gradients J_i^T r_i "
                           "must sum to zero)"},
              {"residual-gradients", "FILE: the per-sample gradients g_i at the minimum, n x p (any loss; with "
                                     "--softmax or --curvature for its curvature; needs --jacobian)"},
              {"lr", "ETA: learning rate (rho(T) < 1 needed)"},
              {"batch", "B: batch size"},
              {"sampling", "without|with|bernoulli (default without)"},
              {"top", "K: top eigenvalues of Sigma reported (default 5)"},
              {"gradient-tol", "T: the point is a minimum when |mean g_i| <= T mean |g_i| (default 1e-6)"},
              {"weight-decay", "LAMBDA: L2 weight decay, theta <- theta - lr (g_B + LAMBDA theta): the point must "
                               "minimize the loss + LAMBDA/2 |theta|^2 (needs --theta and --jacobian; with --momentum too; "
                               "theory/covariance.md, section 8); with --optimizer adamw the decoupled decay, the point "
                               "then has grad + LAMBDA P theta* = 0 (default 0)"},
              {"theta", "FILE: that point theta* (p values), with --weight-decay"}});
  momentum_options(c);  // momentum SGD's stationary covariance (theory/covariance.md, section 7)
  optimizer_options(c);  // RMSProp / Adam with P frozen: phi = P^{1/2} delta, mapped back to theta

  c = command(root_, "montecarlo", "simulate linearized SGD beside the exact answer", cmd_montecarlo);
  geometry_options(c);
  options(c, {{"batch", "B: batch size"},
              {"lr", "ETA: learning rate"},
              {"sampling", "without|with|bernoulli|reshuffle"},
              {"weight-decay", "LAMBDA: L2 weight decay (as in threshold; with --momentum too; with --optimizer "
                               "adam|rmsprop their own L2 decay on the whole 2p state, from --jacobian and "
                               "--preconditioner) (default 0)"}});
  table_options<CrossCheckOptions>(c);  // --steps, --trajectories, --blocks, --seed
  flags(c, {{"quiet", "no progress on stderr"}});
  momentum_options(c);
  optimizer_options(c);
}

// minimum, analyze, escape: a model and a data set, trained to a minimum.
void Program::problem_commands() {
  CLI::App* c = command(root_, "minimum", "build a model and a data set and reach an interpolating minimum", cmd_minimum);
  problem_options(c);
  momentum_options(c);  // the gd and sgd trainers

  c = command(root_, "analyze", "minimum, then the eta*(B) curve and the bounds at it", cmd_analyze);
  problem_options(c);
  options(c, {{"batches", "1,2,4,...: batch sizes of the curve"}});
  table_options<ReductionOptions>(c);  // --rank-tol, --space
  solver_options(c, {"method", "tol", "ncv", "device", "precision"},
                 {{"device", "where the curve's operator applications run"},
                  {"precision", "the curve's first applications in single precision, certified in double"}});
  momentum_options(c);  // the curve is momentum SGD's; the gd and sgd trainers train with it

  c = command(root_, "escape", "nonlinear SGD from the minimum + epsilon delta: escape fraction, rate",
              cmd_escape);
  problem_options(c);
  momentum_options(c);  // the runs, and the exact eta* and rho beside them
  options(c, {{"lr-factor", "F: the runs' learning rate is F eta*(B)"}});
  table_options<EscapeOptions>(c);  // --epsilon, --runs, --escape-steps
  c->get_option("--lr-factor")->excludes("--lr");
}

// cnn train, analyze, sweep.
void Program::cnn_commands() {
  // The cnn commands are declared here (their help, the fuzz target's
  // parsing) but run only in sgdstab-cnn, the program linked with LibTorch
  // (cli/cnn_main.cpp), which passes their handlers to run_subset; `sgdstab
  // cnn train|analyze|sweep` starts it (cli/main.cpp), so that the other
  // commands do not load LibTorch (about 0.65 s per process).
  const Handler cmd_cnn_train = [](const Args&, std::ostream&, std::ostream&) -> int {
    throw UsageError("cnn: this build has no LibTorch module (install libtorch-dev, or point Torch_DIR at a "
                     "LibTorch, and rebuild)");
  };
  const Handler cmd_cnn_analyze = cmd_cnn_train, cmd_cnn_sweep = cmd_cnn_train;
  CLI::App* cnn = root_.add_subcommand("cnn", "VGG-style CNNs trained by SGD (builds with LibTorch only)");
  cnn->require_subcommand(1);
  CLI::App* c = command(*cnn, "train", "train a CNN by SGD", cmd_cnn_train, "cnn ");
  cnn_options(c);
  cnn_train_options(c);
  momentum_options(c);
  c = command(*cnn, "analyze", "train (or --params F), then eta*(B), bounds, |H|_F and lambda_max cross-checks",
              cmd_cnn_analyze, "cnn ");
  cnn_options(c);
  cnn_train_options(c);
  options(c, {{"params", "F: analyze these parameters (no training)"},
              {"batches", "1,2,4,...: batch sizes of the curve"},
              {"probes", "K: Hutchinson probes for |H|_F"},
              {"lanczos-iters", "K: Lanczos iterations for lambda_max (0 skips)"},
              {"geometry", "exact|hvp: the Gram (exact) or only the HVP estimates (large n)"}});
  flags(c, {{"allow-residual", "go on at a point that does not interpolate"}});
  momentum_options(c);  // trains with it, and the curve and at_lr verdict are momentum SGD's
  c = command(*cnn, "sweep", "one run per (lr, B): sweep.csv and the |H|_F vs sqrt(B)/lr plot (SVG)",
              cmd_cnn_sweep, "cnn ");
  cnn_options(c);
  options(c, {{"lrs", "ETA1,ETA2,...: learning rates"},
              {"batches", "B1,B2,...: batch sizes"},
              {"out", "DIR: output directory"},
              {"log-every", "K: log mu along each run every K steps"}});
}

// Options CLI11 left over: unknown names and stray values, named.
void reject_extras(const CLI::App& app, const std::string& command) {
  for (const std::string& token : app.remaining()) {
    if (token.rfind("--", 0) == 0) {
      const std::string name = token.substr(2, token.find('=') == std::string::npos ? std::string::npos
                                                                                     : token.find('=') - 2);
      if (name.empty()) throw UsageError("unexpected argument '" + token + "' (no option name)");
      throw UsageError("unknown option --" + name + " for '" + command + "'");
    }
    throw UsageError("unexpected argument '" + token + "' (options look like --name value)");
  }
}

// Options that may be given several times (Args::all reads them).
const char* const kRepeatable[] = {"--mark"};

// Each option at most once (a flag too), except kRepeatable.
void reject_repeats(const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options()) {
    const bool repeatable = std::find(std::begin(kRepeatable), std::end(kRepeatable), opt->get_name()) != std::end(kRepeatable);
    if (opt->count() > 1 && !repeatable) throw UsageError("option " + opt->get_name() + " given twice");
  }
}

// `--flag=value` is an error, whatever the value.
void reject_flag_values(const Program& program, int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string token = argv[i];
    const std::size_t eq = token.find('=');
    if (token.rfind("--", 0) == 0 && eq != std::string::npos && program.is_flag(token.substr(2, eq - 2)))
      throw UsageError("option " + token.substr(0, eq) + " is a flag and takes no value");
  }
}

// The command named by argv: "threshold", "cnn train", ... (checked before parsing,
// so that an unknown command is named as such).
const Command& select(const Program& program, int argc, const char* const* argv) {
  if (argc < 2) throw UsageError("no command given");
  std::string name = argv[1];
  if (name == "cnn") {
    const std::string sub = argc > 2 ? argv[2] : "";
    if (sub != "--help" && sub != "-h") {
      if (program.find("cnn " + sub) == nullptr)
        throw UsageError("cnn: expected `cnn train`, `cnn analyze` or `cnn sweep`, got '" + sub + "'");
      name += " " + sub;
    }
  }
  const Command* command = program.find(name);
  if (command == nullptr && name != "cnn") throw UsageError("unknown command '" + name + "'");
  static const Command cnn_group{"cnn", nullptr, nullptr};
  return command != nullptr ? *command : cnn_group;
}

// The help of a command, its usage line naming the whole command ("sgdstab cnn train").
std::string help_text(const CLI::App& app) {
  std::string prefix;
  for (const CLI::App* parent = app.get_parent(); parent != nullptr; parent = parent->get_parent())
    prefix = prefix.empty() ? parent->get_name() : parent->get_name() + " " + prefix;
  return prefix.empty() ? app.help() : app.help(prefix);
}

}  // namespace

// Reads every given option through every accessor of Args, as the commands
// do (check_arguments: the parsing half of a run, for the fuzz target).
void read_every_option(const Args& args, const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->count() == 0 || opt->get_name().rfind("--", 0) != 0) continue;
    const std::string key = opt->get_name().substr(2);
    const std::function<void()> readers[] = {[&] { (void)args.str(key); },
                                             [&] { (void)args.integer(key); },
                                             [&] { (void)args.number(key); },
                                             [&] { (void)args.integer_list(key); },
                                             [&] { (void)args.all(key); }};
    for (const auto& read : readers) {
      try {
        read();
      } catch (const UsageError&) {
      }
    }
  }
}

// The command's handler, or in a program that runs a subset of the commands
// (sgdstab-mpi, sgdstab-cnn) the subset's handler for it.
// \throws UsageError when the subset lacks the command.
Handler handler_of(const Command& command, const std::vector<std::pair<std::string, Handler>>* subset) {
  if (subset == nullptr) return command.run;
  std::string names;
  for (const auto& [name, fn] : *subset) {
    if (name == command.name) return fn;
    names += (names.empty() ? "" : ", ") + name;
  }
  throw UsageError("this program runs only " + names + "; got '" + command.name + "'");
}

int run_or_check(int argc, const char* const* argv, std::ostream& out, std::ostream& err, bool check_only,
                 const std::vector<std::pair<std::string, Handler>>* subset = nullptr) {
  Program program;
  const CLI::App* help_of = &program.root();
  try {
    if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
                      std::string(argv[1]) == "help")) {
      out << help_text(program.root());
      return exit_code(Exit::ok);
    }
    const Command& command = select(program, argc, argv);
    const Handler handler = handler_of(command, subset);
    if (command.app != nullptr) help_of = command.app;
    reject_flag_values(program, argc, argv);
    try {
      program.root().parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      out << help_text(command.app != nullptr ? *command.app : *program.root().get_subcommand("cnn"));
      return exit_code(Exit::ok);
    } catch (const CLI::ParseError& e) {
      throw UsageError(e.what());
    }
    reject_extras(*command.app, command.name);
    reject_repeats(*command.app);
    if (check_only) {
      read_every_option(Args(*command.app, command.name), *command.app);
      return exit_code(Exit::ok);
    }
    std::ostringstream buffer;  // nothing reaches `out` unless the command returns
    const int code = handler(Args(*command.app, command.name), buffer, err);
    // A signal handled after the command's last poll (a short command, or one
    // that arrived while it was printing into the buffer): interrupted all
    // the same, so that a handled signal never ends in a printed result.
    if (sgdstab::interrupt_requested())
      throw sgdstab::interrupted(command.name, sgdstab::interrupt_signal());
    out << buffer.str();
    return code;
  } catch (const sgdstab::interrupted& e) {
    err << "sgdstab: " << e.what() << "; no result written\n";
    return interrupted_exit_code(e.signal());
  } catch (const UsageError& e) {
    err << "sgdstab: " << e.what() << "\n\n" << help_text(*help_of);
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
  } catch (const std::bad_alloc& e) {
    // An allocation the budget checks did not foresee (a ulimit or cgroup
    // limit, or memory taken meanwhile): the same exit as "too large".
    err << "sgdstab: out of memory: an allocation failed (" << e.what()
        << "); set --memory-limit to what this process may really use (a ulimit or container limit),"
           " or give a smaller problem\n";
    return exit_code(Exit::failure);
  } catch (const std::exception& e) {
    err << "sgdstab: error: " << e.what() << "\n";
    return exit_code(Exit::failure);
  }
}

int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  return run_or_check(argc, argv, out, err, false);
}

int check_arguments(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  return run_or_check(argc, argv, out, err, true);
}

int run_subset(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
               const std::vector<std::pair<std::string, CommandHandler>>& commands) {
  std::vector<std::pair<std::string, Handler>> subset(commands.begin(), commands.end());
  return run_or_check(argc, argv, out, err, false, &subset);
}

}  // namespace sgdstab::cli
