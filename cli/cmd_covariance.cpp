// `sgdstab covariance`.
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <ostream>
#include <vector>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

// --theta FILE: theta* (p values, one row or one column).
Eigen::VectorXd theta_option(const Args& args, Index p) {
  const Eigen::MatrixXd theta = read_matrix(args.str("theta"));
  if (theta.size() != p || (theta.rows() != 1 && theta.cols() != 1))
    throw sgdstab::invalid_argument("--theta: expected p = " + std::to_string(p) +
                                    " values in one row or one column, got a " + std::to_string(theta.rows()) +
                                    " x " + std::to_string(theta.cols()) + " matrix");
  return Eigen::Map<const Eigen::VectorXd>(theta.data(), theta.size());
}

// --optimizer rmsprop|adam with --preconditioner P (theory/covariance.md,
// section 7, end; theory/adaptive.md): phi = P^{1/2} (theta - theta*) moves as
// heavy-ball (Adam: beta1 at lr (1 - beta1); RMSProp: its --momentum at lr) on
// J P^{-1/2} with gradients P^{-1/2} g_i. Sigma of phi is solved in the
// geometry's coordinates X and mapped back: with V = J~^T Z (n diag d)^{-1} the
// basis of range(H~), theta's covariance is P^{-1/2} V X V^T P^{-1/2}, its
// trace <V^T P^{-1} V, X>, its eigenvalues those of X^{1/2} V^T P^{-1} V X^{1/2}.
int adaptive_covariance(const Args& args, const OptimizerSetting& opt, double lr, Sampling sampling,
                        CovarianceOptions o, std::ostream& out, std::ostream& err) {
  // refuse_adaptive_l2 refused --weight-decay with rmsprop and adam (L2 through P^{-1}); AdamW's is decoupled.
  const double wd = opt.decoupled_weight_decay ? weight_decay_option(args) : 0.0;
  if ((wd > 0.0) != args.has("theta"))
    throw UsageError("--optimizer adamw --weight-decay WD > 0 needs --theta FILE (theta*, with grad + WD P theta* "
                     "= 0), and --theta needs them");
  if (!args.has("jacobian") || !args.has("preconditioner"))
    throw UsageError("covariance --optimizer " + opt.name + " needs --jacobian and --preconditioner FILE (theta's "
                     "covariance is mapped back through P)");
  o.momentum = opt.momentum.value_or(Momentum{});
  // AdamW: in phi the heavy-ball's decoupled mu = WD / (1 - beta1) (theory/adaptive.md, section 5).
  o.decoupled_weight_decay = wd / (1.0 - opt.beta1());
  o.validate();
  const double lr_hb = opt.adam ? adam_heavy_ball_lr(lr, opt.beta1()) : lr;
  const Eigen::MatrixXd jac = load_jacobian(args);  // J P^{-1/2}, curvature applied
  const Geometry g = Geometry::from_jacobian(jac, outputs_option(args), reduction_options(args));
  const Index b = batch_of(args, g);
  const Eigen::MatrixXd pm = read_matrix(args.str("preconditioner"));  // checked by load_jacobian
  const Eigen::VectorXd p = Eigen::Map<const Eigen::VectorXd>(pm.data(), pm.size());
  if (wd > 0.0)  // phi* = P^{1/2} theta* in the geometry's coordinates
    o.parameters =
        reduced_parameters(g, jac, p.cwiseSqrt().cwiseProduct(theta_option(args, p.size())), o.gradient_tolerance);
  CovarianceResult r;
  if (args.has("residual-gradients")) {  // P^{-1/2} g_i in the geometry's coordinates
    Eigen::MatrixXd grads = read_matrix(args.str("residual-gradients"));
    if (grads.cols() == p.size()) grads = grads * p.cwiseSqrt().cwiseInverse().asDiagonal();
    r = stationary_covariance_from_gradients(g, reduced_gradients(g, jac, grads), lr_hb, b, sampling, o);
  } else {  // Z_i^T r_i is already V^T P^{-1/2} J_i^T r_i
    r = stationary_covariance(g, residual_option(args, "residual", g.samples() * g.outputs(), g.outputs()), lr_hb, b,
                              sampling, o);
  }
  const Eigen::MatrixXd basis = reduction_basis(g, jac);
  const Eigen::MatrixXd gram_p = basis.transpose() * p.cwiseInverse().asDiagonal() * basis;  // V^T P^{-1} V
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(r.covariance);
  const Eigen::MatrixXd half =
      es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * es.eigenvectors().transpose();
  const Eigen::VectorXd ev =
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(half * gram_p * half, Eigen::EigenvaluesOnly).eigenvalues();
  const Index k = std::min<Index>(o.top, ev.size());
  json j = covariance_json(g, r);
  j["trace_preconditioned"] = r.trace;  // E[(theta - theta*)^T P (theta - theta*)]
  j["trace"] = (gram_p.array() * r.covariance.array()).sum();
  std::vector<double> top;
  for (Index i = 0; i < k; ++i) top.push_back(ev(ev.size() - 1 - i));
  j["top_eigenvalues"] = top;
  j["lr"] = lr;
  j["lr_heavy_ball"] = lr_hb;
  if (wd > 0.0) j["weight_decay"] = wd;  // AdamW's (echo_inputs adds weight_decay_decoupled)
  j["definition"] = "Sigma = lim E[(theta - theta*)(theta - theta*)^T] of " + opt.name +
                    " with P frozen (phi = P^{1/2} delta: heavy-ball with momentum beta1 on J P^{-1/2} at "
                    "lr_heavy_ball, gradients P^{-1/2} g_i; AdamW's decoupled decay shrinks phi by 1 - lr "
                    "weight_decay); trace and top_eigenvalues are theta's, trace_preconditioned = E[delta^T P delta]; "
                    "excess_loss = 1/2 tr(H Sigma); gradient_noise_trace and mean_gradient_norm are of the "
                    "preconditioned P^{-1/2} g_i";
  echo_inputs(args, opt, j);
  return finish(j, r.status(), out, err);
}

}  // namespace

int cmd_covariance(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  if (args.has("residual") == args.has("residual-gradients"))
    throw UsageError("covariance needs exactly one of --residual FILE (the n C residuals f(x_i) - y_i of the square "
                     "loss) or --residual-gradients FILE (the n x p per-sample gradients, any loss; needs --jacobian)");
  if (args.has("residual") && (args.has("curvature") || args.has("softmax")))
    throw UsageError("--curvature and --softmax need --residual-gradients (--residual is the square loss's)");
  if (args.has("residual-gradients") && !args.has("jacobian"))
    throw UsageError("--residual-gradients needs --jacobian (the gradients live in parameter space)");
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  CovarianceOptions o;
  if (args.has("top")) {
    const long long top = args.integer("top");
    if (top < 0) throw UsageError("--top: K must be >= 0, got " + std::to_string(top));
    o.top = static_cast<Index>(top);
  }
  if (args.has("gradient-tol")) o.gradient_tolerance = args.number("gradient-tol");
  const OptimizerSetting opt = optimizer_option(args);
  refuse_adaptive_l2(opt, "covariance");
  if (opt.name != "sgd") return adaptive_covariance(args, opt, lr, sampling, o, out, err);
  o.momentum = momentum_option(args).value_or(Momentum{});  // --momentum BETA [--nesterov]
  // --weight-decay LAMBDA --theta FILE (theory/covariance.md, section 8).
  o.weight_decay = weight_decay_option(args);
  const bool decay = o.weight_decay > 0.0;
  if (args.has("theta") && !decay)
    throw UsageError("--theta is the minimum of the regularized loss: it needs --weight-decay LAMBDA > 0");
  if (decay && !args.has("theta"))
    throw UsageError("--weight-decay needs --theta FILE: the minimum theta* of the loss + LAMBDA/2 |theta|^2 (p values)");
  if (decay && !args.has("jacobian"))
    throw UsageError("--weight-decay needs --jacobian (theta* is put in the geometry's coordinates through it)");
  o.validate();
  // theta* in the coordinates of g (with --weight-decay), from its Jacobian.
  if (args.has("residual-gradients") || decay) {
    const Eigen::MatrixXd jac = load_jacobian(args);  // with --curvature / --softmax applied
    const Geometry g = Geometry::from_jacobian(jac, outputs_option(args), reduction_options(args));
    const Index b = batch_of(args, g);
    if (decay) o.parameters = reduced_parameters(g, jac, theta_option(args, jac.cols()), o.gradient_tolerance);
    if (!args.has("residual-gradients")) {
      const Eigen::VectorXd res = residual_option(args, "residual", g.samples() * g.outputs(), g.outputs());
      const CovarianceResult r = stationary_covariance(g, res, lr, b, sampling, o);
      return finish(covariance_json(g, r), r.status(), out, err);
    }
    const Eigen::MatrixXd red = reduced_gradients(g, jac, read_matrix(args.str("residual-gradients")));
    const CovarianceResult r = stationary_covariance_from_gradients(g, red, lr, b, sampling, o);
    json j = covariance_json(g, r);
    echo_input_transforms(args, j);
    return finish(j, r.status(), out, err);
  }
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const Eigen::VectorXd res = residual_option(args, "residual", g.samples() * g.outputs(), g.outputs());
  const CovarianceResult r = stationary_covariance(g, res, lr, b, sampling, o);
  return finish(covariance_json(g, r), r.status(), out, err);
}

}  // namespace sgdstab::cli
