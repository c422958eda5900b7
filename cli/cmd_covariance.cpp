// `sgdstab covariance`.
#include <ostream>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

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
  if (decay && args.has("preconditioner"))
    throw UsageError("--weight-decay with --preconditioner: weight decay's covariance is plain SGD's");
  o.validate();
  // theta* in the coordinates of g (with --weight-decay), from its Jacobian.
  auto set_parameters = [&](const Geometry& g, const Eigen::MatrixXd& jac) {
    if (!decay) return;
    const Eigen::MatrixXd theta = read_matrix(args.str("theta"));
    if (theta.rows() != 1 && theta.cols() != 1)
      throw sgdstab::invalid_argument("--theta: expected p = " + std::to_string(jac.cols()) +
                                      " values in one row or one column, got a " + std::to_string(theta.rows()) +
                                      " x " + std::to_string(theta.cols()) + " matrix");
    o.parameters = reduced_parameters(g, jac, Eigen::Map<const Eigen::VectorXd>(theta.data(), theta.size()),
                                      o.gradient_tolerance);
  };
  if (args.has("residual-gradients") || decay) {
    const Eigen::MatrixXd jac = load_jacobian(args);  // with --curvature / --softmax applied
    const Geometry g = Geometry::from_jacobian(jac, outputs_option(args), reduction_options(args));
    const Index b = batch_of(args, g);
    set_parameters(g, jac);
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
