#include "inputs.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "foundations/check.hpp"
#include "option_table.hpp"
#include "sgdstab/loss_curvature.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sampling.hpp"

namespace sgdstab::cli {

double memory_limit_option(const Args& args) {
  // The solver's field (lib/foundations/options.cpp): MiB on the command line, its rule and message.
  SolverOptions so;
  apply_cli_field(args, option_field<SolverOptions>("memory_limit_bytes"), so);
  return so.memory_limit_bytes;
}

ReductionOptions reduction_options(const Args& args) {
  ReductionOptions ro;
  apply_cli(args, ro);  // the table's options (lib/geometry/reduction_options.cpp): --rank-tol, --space
  ro.memory_limit_bytes = memory_limit_option(args);
  return ro;
}

Index outputs_option(const Args& args) {
  const long long c = args.integer_or("outputs", 1);
  if (c < 1) throw UsageError("--outputs: C must be >= 1, got " + std::to_string(c));
  return static_cast<Index>(c);
}

namespace {

// The stacked S_i of --curvature FILE ((n C) x C) or --softmax FILE (n x C), if
// any, for an input with `rows` = n C rows.
std::optional<Eigen::MatrixXd> curvature_option(const Args& args, Index c, Index rows) {
  if (args.has("curvature") && args.has("softmax")) throw UsageError("give at most one of --curvature and --softmax");
  const std::string n = std::to_string(rows / c), cs = std::to_string(c);
  if (args.has("softmax")) {
    const Eigen::MatrixXd p = read_matrix(args.str("softmax"));
    if (p.rows() * c != rows || p.cols() != c)
      throw sgdstab::invalid_argument("--softmax: the probabilities must be n x C = " + n + " x " + cs +
                                      " (one row per sample, C = --outputs), got " + std::to_string(p.rows()) +
                                      " x " + std::to_string(p.cols()));
    return softmax_curvature(p);
  }
  if (!args.has("curvature")) return std::nullopt;
  Eigen::MatrixXd s = read_matrix(args.str("curvature"));
  if (s.rows() != rows || s.cols() != c)
    throw sgdstab::invalid_argument("--curvature: the S_i stacked must be (n C) x C = " + std::to_string(rows) +
                                    " x " + cs + ", got " + std::to_string(s.rows()) + " x " +
                                    std::to_string(s.cols()));
  return s;
}

}  // namespace

namespace {

Eigen::MatrixXd curved_jacobian(const Args& args) {
  const Index c = outputs_option(args);
  Eigen::MatrixXd jac = read_matrix(args.str("jacobian"));
  if (const auto s = curvature_option(args, c, jac.rows())) jac = apply_curvature_to_jacobian(jac, *s, c);
  return jac;
}

Eigen::VectorXd preconditioner_option(const Args& args) {
  const Eigen::MatrixXd p = read_matrix(args.str("preconditioner"));
  if (p.cols() != 1 && p.rows() != 1)
    throw sgdstab::invalid_argument("--preconditioner: expected one column of p entries, got " +
                                    std::to_string(p.rows()) + " x " + std::to_string(p.cols()));
  return Eigen::Map<const Eigen::VectorXd>(p.data(), p.size());
}

}  // namespace

Eigen::MatrixXd load_jacobian(const Args& args) {
  Eigen::MatrixXd jac = curved_jacobian(args);
  if (args.has("preconditioner")) jac = precondition_jacobian(jac, preconditioner_option(args));
  return jac;
}

AdaptiveL2Input adaptive_l2_input(const Args& args) {
  if (!args.has("jacobian") || args.has("gram"))
    throw UsageError("--weight-decay with --optimizer rmsprop|adam needs --jacobian FILE (not --gram): the decay "
                     "acts through P^{-1} on the whole parameter space (theory/adaptive.md, section 6)");
  if (!args.has("preconditioner"))
    throw UsageError("--weight-decay with --optimizer rmsprop|adam (L2: g + LAMBDA theta before P^{-1}) needs "
                     "--preconditioner FILE: the decay acts through P^{-1} (theory/adaptive.md, section 6)");
  Eigen::MatrixXd jac = curved_jacobian(args);
  Eigen::VectorXd pre = preconditioner_option(args);
  const Index c = outputs_option(args);
  const ReductionOptions ro = reduction_options(args);
  Geometry g = Geometry::from_jacobian(precondition_jacobian(jac, pre), c, ro);
  return {std::move(jac), std::move(pre), c, ro, std::move(g)};
}

void refuse_adaptive_l2(const OptimizerSetting& o, const std::string& command) {
  if (o.l2_adaptive)
    throw UsageError("--weight-decay with --optimizer " + o.name + " (L2 through P^{-1}) is available on threshold, "
                     "curve, radius, region and montecarlo, not on " + command + " (theory/adaptive.md, section 6); AdamW's decoupled "
                     "decay is --optimizer adamw --weight-decay");
}

Geometry load_geometry(const Args& args) {
  if (args.has("jacobian") == args.has("gram")) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
  const Index c = outputs_option(args);
  const ReductionOptions ro = reduction_options(args);
  if (args.has("jacobian")) return Geometry::from_jacobian(load_jacobian(args), c, ro);
  if (args.has("preconditioner"))
    throw UsageError("--preconditioner needs --jacobian: with --gram, fold it into the Gram (K = J P^{-1} J^T, "
                     "theory/adaptive.md)");
  Eigen::MatrixXd gram = read_matrix(args.str("gram"));
  if (const auto s = curvature_option(args, c, gram.rows())) gram = apply_curvature_to_gram(gram, *s, c);
  return Geometry::from_gram(gram, c, ro);
}

void echo_input_transforms(const Args& args, json& j) {
  if (args.has("softmax"))
    j["loss_curvature"] = {{"kind", "softmax"}, {"file", args.str("softmax")}};
  else if (args.has("curvature"))
    j["loss_curvature"] = {{"kind", "matrix"}, {"file", args.str("curvature")}};
  if (args.has("preconditioner")) j["preconditioner"] = args.str("preconditioner");
}

OptimizerSetting optimizer_option(const Args& args) {
  OptimizerSetting o;
  o.name = args.has("optimizer") ? args.str("optimizer") : "sgd";
  if (o.name != "sgd" && o.name != "rmsprop" && o.name != "adam" && o.name != "adamw")
    throw UsageError("--optimizer: expected sgd|rmsprop|adam|adamw, got '" + o.name + "'");
  if (o.name == "sgd") {
    if (args.has("preconditioner"))
      throw UsageError("--preconditioner is for --optimizer rmsprop|adam|adamw (P = sqrt(v_hat) + eps)");
    o.momentum = momentum_option(args);
    return o;
  }
  if (args.flag("nesterov"))
    throw UsageError("--nesterov is not available with --optimizer " + o.name + " (torch's " + o.name +
                     " has no Nesterov variant; NAdam is another method)");
  if (args.has("weight-decay") && o.name != "adamw") {
    // L2: g + LAMBDA theta before P^{-1}, which does not commute with the
    // preconditioned Hessian (theory/adaptive.md, section 6); its inputs are
    // checked by adaptive_l2_input, after refuse_adaptive_l2.
    if (o.name == "rmsprop" && args.has("momentum") && args.number("momentum") != 0.0)
      throw UsageError("--weight-decay with --optimizer rmsprop --momentum is not covered (RMSProp's L2 decay is, "
                       "without momentum; so is Adam's)");
    o.l2_adaptive = true;
  }
  o.decoupled_weight_decay = o.name == "adamw" && args.has("weight-decay");
  if (o.name == "rmsprop") {
    o.momentum = momentum_option(args);
    return o;
  }
  o.adam = true;
  Momentum m;
  m.beta = args.has("momentum") ? args.number("momentum") : 0.9;  // torch.optim.Adam's betas[0]
  if (!(std::isfinite(m.beta) && m.beta >= 0.0 && m.beta < 1.0))
    throw UsageError("--momentum: Adam's beta1 must be in [0, 1), got " + detail::fmt(m.beta));
  o.momentum = m;
  return o;
}

void adam_fields(json& j) {
  // GD's 2 / lambda_max is not Adam's full-batch limit (that is eta_mean, in Adam's lr): no eta_gd.
  j.erase("eta_gd");
}

void echo_inputs(const Args& args, const OptimizerSetting& o, json& j) {
  echo_input_transforms(args, j);
  if (!args.has("optimizer")) return;
  j["optimizer"] = o.name;
  // null: no --preconditioner, the input is taken as already preconditioned (J P^{-1/2}, or P = I).
  if (o.name != "sgd" && !args.has("preconditioner")) j["preconditioner"] = nullptr;
  if (o.adam) {
    j["beta1"] = o.beta1();
    adam_fields(j);
  }
  // AdamW: theta <- (1 - lr LAMBDA) theta before Adam's step (theory/adaptive.md, section 5).
  if (o.decoupled_weight_decay) j["weight_decay_decoupled"] = true;
}

SolverOptions solver_options(const Args& args) {
  SolverOptions so;
  apply_cli(args, so);  // the table's options (lib/foundations/options.cpp): --method, --tol, --ncv, --max-restarts, ...
  so.want_direction = args.has("direction");
  so.validate();
  return so;
}

std::optional<Momentum> momentum_option(const Args& args) {
  if (!args.has("momentum")) {
    if (args.flag("nesterov")) throw UsageError("--nesterov needs --momentum BETA");
    return std::nullopt;
  }
  Momentum m;
  apply_cli(args, m);  // the table's options (lib/foundations/options.cpp): --momentum, --nesterov
  return m;
}

double weight_decay_option(const Args& args) {
  if (!args.has("weight-decay")) return 0.0;
  const double lambda = args.number("weight-decay");
  if (!(std::isfinite(lambda) && lambda >= 0.0))
    throw UsageError("--weight-decay: LAMBDA must be finite and >= 0, got " + detail::fmt(lambda));
  return lambda;
}

Eigen::VectorXd residual_option(const Args& args, const std::string& name, Index rows, Index outputs) {
  const Eigen::MatrixXd m = read_matrix(args.str(name));
  if (m.cols() == 1 || m.rows() == 1) return Eigen::Map<const Eigen::VectorXd>(m.data(), m.size());
  if (m.cols() == outputs && m.rows() * outputs == rows) {
    const RowMatrixXd rm = m;  // row by row: sample-major
    return Eigen::Map<const Eigen::VectorXd>(rm.data(), rm.size());
  }
  throw sgdstab::invalid_argument("--" + name + ": expected n C = " + std::to_string(rows) +
                                  " values (one column, or n x C with sample i in row i), got " +
                                  std::to_string(m.rows()) + " x " + std::to_string(m.cols()));
}

Index batch_of(const Args& args, const Geometry& g) {
  const Index b = static_cast<Index>(args.integer("batch"));
  check_batch(b, g.samples(), "--batch");
  return b;
}

void write_direction(const Args& args, const Eigen::MatrixXd& dir) {
  if (args.has("direction") && dir.size() > 0) {
    const std::string path = args.str("direction");
    write_matrix(path, dir);
  }
}

std::uint64_t seed_option(const Args& args, std::uint64_t fallback) {
  if (!args.has("seed")) return fallback;
  const long long seed = args.integer("seed");
  if (seed < 0) throw UsageError("--seed: expected an integer >= 0, got " + std::to_string(seed));
  return static_cast<std::uint64_t>(seed);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sgdstab::cli
