// Interpolating minima: minimum-norm least squares, Levenberg-Marquardt,
// GD/SGD, and the interpolation check (theory/minimize.md).
#include "sgdstab/minimize.hpp"

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using detail::require;

void MinimizeOptions::validate() const {
  check_fields(*this, "MinimizeOptions");  // the table's rules (trainer_options.cpp)
}

void TrainOptions::validate(Index samples) const {
  check_fields(*this, "TrainOptions");  // the table's rules (trainer_options.cpp)
  check_batch(batch, samples, "TrainOptions::batch");
  momentum.validate();
}

double residual_tolerance_for(const Eigen::Ref<const MatrixXd>& y, double relative) {
  const double scale = y.size() > 0 ? y.cwiseAbs().maxCoeff() : 0.0;
  return relative * (scale > 0.0 ? scale : 1.0);
}

namespace {

// max |r|, or +Inf when r has a NaN or Inf entry (Eigen's maxCoeff is
// unspecified with NaN): a non-finite residual never passes a tolerance test.
double max_abs(const Eigen::Ref<const MatrixXd>& r) {
  return r.allFinite() ? (r.size() > 0 ? r.cwiseAbs().maxCoeff() : 0.0) : INFINITY;
}

// Residual F - Y as a sample-major vector r (r[i*c + k]).
VectorXd residual_vector(const Mlp& model, const Eigen::Ref<const MatrixXd>& x,
                         const Eigen::Ref<const MatrixXd>& y) {
  const MatrixXd r = model.residuals(x, y);
  VectorXd out(r.size());
  Eigen::Map<RowMatrix>(out.data(), r.rows(), r.cols()) = r;
  return out;
}

void finish(MinimizeResult& res, const Mlp& model, const Eigen::Ref<const MatrixXd>& x,
            const Eigen::Ref<const MatrixXd>& y, const detail::Stopwatch& watch) {
  const MatrixXd r = model.residuals(x, y);
  res.max_residual = max_abs(r);
  res.loss = r.allFinite() ? 0.5 * r.squaredNorm() / static_cast<double>(x.rows()) : INFINITY;
  res.gradient_norm = r.allFinite() ? model.gradient(x, y).norm() : INFINITY;
  if (res.max_residual <= res.tolerance) res.report.status = Status::converged;
  else if (res.report.status == Status::converged) res.report.status = Status::not_converged;
  res.report.seconds = watch.seconds();
}

}  // namespace

MinimizeResult minimum_norm_solution(Mlp& model, const Eigen::Ref<const MatrixXd>& x,
                                     const Eigen::Ref<const MatrixXd>& y, const MinimizeOptions& options) {
  const detail::Stopwatch watch;
  options.validate();
  require(model.spec().linear_in_parameters(), "minimum_norm_solution",
          "the model must be linear in theta (only the output layer trainable); use Levenberg-Marquardt "
          "(gauss_newton, CLI --trainer gauss-newton)");
  const MatrixXd phi = model.features(x);  // validates x
  require(y.rows() == x.rows() && y.cols() == model.outputs() && y.allFinite(), "minimum_norm_solution",
          "Y must be a finite n x c = " + std::to_string(x.rows()) + " x " + std::to_string(model.outputs()) +
              " matrix");
  const Index L = model.spec().layers(), n = x.rows(), m = phi.cols();
  const bool bias = model.spec().bias;
  const Index cols = m + (bias ? 1 : 0);
  check_memory(8.0 * 3.0 * static_cast<double>(n) * static_cast<double>(cols),
               "the least-squares design matrix (" + std::to_string(n) + " x " + std::to_string(cols) + ")",
               options.memory_limit_bytes);
  // f_k(x_i) = s_L W_L(k,:) phi_i + b_k: one design matrix for all outputs
  // (theory/minimize.md, eq. 1).
  MatrixXd design(n, cols);
  design.leftCols(m) = model.multiplier(L) * phi;
  if (bias) design.col(m).setOnes();
  Eigen::CompleteOrthogonalDecomposition<MatrixXd> cod(design);
  const MatrixXd sol = cod.solve(MatrixXd(y));  // cols x c, minimum norm
  model.set_weight(L, sol.topRows(m).transpose());
  if (bias) model.set_bias(L, sol.row(m).transpose());
  MinimizeResult res;
  res.method = "minimum-norm";
  res.report.iterations = 1;
  res.tolerance = residual_tolerance_for(y, options.residual_tolerance);
  finish(res, model, x, y, watch);
  res.loss_history.push_back(res.loss);
  const std::string rank = std::to_string(cod.rank());
  if (res.converged())
    res.report.message = "interpolating minimum-norm solution (feature rank " + rank + ")";
  else if (cod.rank() < n)
    res.report.message = "the features cannot interpolate the data (rank " + rank + " < " + std::to_string(n) +
                  " samples): least-squares solution";
  else
    res.report.message = "the features have full rank " + rank + " but the residual " + detail::fmt(res.max_residual) +
                  " exceeds the tolerance: the design matrix is ill-conditioned (a looser residual tolerance "
                  "may be appropriate)";
  return res;
}

namespace {

// The Gauss-Newton normal matrix at the current theta: K = J J^T in sample
// space, or J^T J with g = J^T r in parameter space (theory/minimize.md, eqs. 3-4).
struct NormalSystem {
  bool sample_space = true;
  MatrixXd normal, jac;
  VectorXd g;
  bool finite() const { return normal.allFinite() && (sample_space || g.allFinite()); }
};

NormalSystem normal_system(const Mlp& model, const Eigen::Ref<const MatrixXd>& x, const VectorXd& r,
                           bool sample_space) {
  NormalSystem sys;
  sys.sample_space = sample_space;
  if (sample_space) {
    sys.normal = model.gram(x);
    return sys;
  }
  const Index nc = x.rows() * model.outputs(), p = model.num_parameters();
  sys.jac = model.jacobian(x);
  sys.normal = MatrixXd::Zero(p, p);
  detail::syrk_lower(true, 1.0, sys.jac.data(), nc, p, nc, sys.normal);
  detail::symmetrize_from_lower(sys.normal);
  sys.g = sys.jac.transpose() * r;
  return sys;
}

// Levenberg-Marquardt damping (Nielsen's update): lambda grows by nu on a
// rejected step, shrinks with the gain ratio on an accepted one.
struct Damping {
  double lambda = -1.0, nu = 2.0;
  void reject() {
    lambda *= nu;
    nu *= 2.0;
  }
  void accept(double gain, double top) {
    lambda *= std::max(1.0 / 3.0, 1.0 - std::pow(2.0 * gain - 1.0, 3));
    lambda = std::max(lambda, 1e-15 * top);
    nu = 2.0;
  }
};

// The step of the damped system (K + lambda I) or (J^T J + lambda I), and the
// residual the linear model predicts for it; false when the system is not
// numerically positive definite or the step is not finite.
bool damped_step(const Mlp& model, const Eigen::Ref<const MatrixXd>& x, const NormalSystem& sys, const VectorXd& r,
                 double lambda, VectorXd& step, VectorXd& predicted_residual) {
  MatrixXd a = sys.normal;
  a.diagonal().array() += lambda;
  MatrixXd rhs = sys.sample_space ? MatrixXd(r) : MatrixXd(-sys.g);
  if (detail::cholesky_solve(a, rhs) != 0) return false;
  if (sys.sample_space) {
    step = -model.vjp(x, rhs.col(0));                 // delta = -J^T (K + lambda I)^{-1} r
    predicted_residual = r - sys.normal * rhs.col(0);  // r + J delta
  } else {
    step = rhs.col(0);
    predicted_residual = r + sys.jac * step;
  }
  return step.allFinite();
}

// Up to 60 damped steps until one decreases phi = |r|^2 / 2 with a positive
// gain ratio; r and phi follow the accepted step. False: none did.
bool accept_a_step(Mlp& model, const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                   const NormalSystem& sys, double top, Damping& damping, VectorXd& r, double& phi) {
  const VectorXd theta = model.parameters();
  for (int attempt = 0; attempt < 60; ++attempt) {
    VectorXd step, predicted_residual;
    if (!damped_step(model, x, sys, r, damping.lambda, step, predicted_residual)) {
      damping.reject();
      continue;
    }
    const double predicted = phi - 0.5 * predicted_residual.squaredNorm();
    model.set_parameters(theta + step);
    const VectorXd r_new = residual_vector(model, x, y);
    const double phi_new = 0.5 * r_new.squaredNorm();
    const double gain = predicted > 0.0 ? (phi - phi_new) / predicted : -1.0;
    if (std::isfinite(phi_new) && phi_new < phi && gain > 0.0) {
      r = r_new;
      phi = phi_new;
      damping.accept(gain, top);
      return true;
    }
    model.set_parameters(theta);
    damping.reject();
  }
  return false;
}

}  // namespace

MinimizeResult gauss_newton(Mlp& model, const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                            const MinimizeOptions& options) {
  const detail::Stopwatch watch;
  options.validate();
  const Index n = x.rows(), nc = n * model.outputs(), p = model.num_parameters();
  const bool sample_space = p >= nc;
  const Index dim = sample_space ? nc : p;
  check_memory(8.0 * 3.0 * static_cast<double>(dim) * static_cast<double>(dim) +
                   (sample_space ? 0.0 : 8.0 * static_cast<double>(nc) * static_cast<double>(p)),
               "Gauss-Newton (" + std::to_string(dim) + " x " + std::to_string(dim) + " system)",
               options.memory_limit_bytes);
  MinimizeResult res;
  res.method = "gauss-newton";
  res.tolerance = residual_tolerance_for(y, options.residual_tolerance);
  VectorXd r = residual_vector(model, x, y);  // validates x, y
  double phi = 0.5 * r.squaredNorm();         // n L
  Damping damping;
  res.report.message = "iteration limit reached";
  for (Index it = 0;; ++it) {
    detail::throw_if_interrupted("gauss_newton");
    res.loss_history.push_back(phi / static_cast<double>(n));
    if (max_abs(r) <= res.tolerance) {
      res.report.message = "residual below tolerance";
      break;
    }
    if (it == options.max_iterations) break;
    const NormalSystem sys = normal_system(model, x, r, sample_space);
    if (!sys.finite()) {
      res.report.message = "the Jacobian has NaN or Inf entries (overflow in the network)";
      res.report.status = Status::numerical_failure;
      break;
    }
    const double top = sys.normal.diagonal().maxCoeff();
    if (!(top > 0.0)) {
      res.report.message = "the Jacobian vanishes: Gauss-Newton cannot move";
      break;
    }
    if (damping.lambda < 0.0) damping.lambda = 1e-3 * top;
    const bool accepted = accept_a_step(model, x, y, sys, top, damping, r, phi);
    res.report.iterations = it + 1;
    if (!accepted) {
      res.report.message = "no step decreases the loss (stalled at a non-interpolating point?)";
      break;
    }
  }
  finish(res, model, x, y, watch);
  return res;
}

namespace {

// theta - lr g, or with momentum (theory/momentum.md, section 1) v <- beta v + g,
// theta - lr v (Nesterov: theta - lr (g + beta v)).
VectorXd sgd_step(const VectorXd& theta, const VectorXd& grad, VectorXd& velocity, const TrainOptions& o) {
  const double beta = o.momentum.beta;
  if (beta == 0.0) return theta - o.lr * grad;
  velocity = beta * velocity + grad;
  return theta - o.lr * (o.momentum.nesterov ? VectorXd(grad + beta * velocity) : velocity);
}

// The loss and residual where a run diverged (the loss +Inf once non-finite).
void finish_diverged(MinimizeResult& res, const Mlp& model, const Eigen::Ref<const MatrixXd>& x,
                     const Eigen::Ref<const MatrixXd>& y, const detail::Stopwatch& watch) {
  const MatrixXd rr = model.residuals(x, y);
  res.max_residual = max_abs(rr);
  res.loss = rr.allFinite() ? 0.5 * rr.squaredNorm() / static_cast<double>(x.rows()) : INFINITY;
  res.gradient_norm = INFINITY;
  res.report.seconds = watch.seconds();
}

}  // namespace

MinimizeResult train_sgd(Mlp& model, const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                         const TrainOptions& options) {
  const detail::Stopwatch watch;
  const Index n = x.rows();
  options.validate(n);
  const bool full = options.batch == n && options.sampling == Sampling::without_replacement;
  MinimizeResult res;
  res.method = full ? "gd" : "sgd";
  res.tolerance = residual_tolerance_for(y, options.residual_tolerance);
  const Index check_every = options.check_every > 0 ? options.check_every : std::max<Index>(1, n / options.batch);
  Rng rng(options.seed);
  MatrixXd r = model.residuals(x, y);  // validates x and y once
  const double initial = 0.5 * r.squaredNorm() / static_cast<double>(n);
  res.loss_history.push_back(initial);
  if (options.observer) options.observer(0, model);
  res.report.message = "step limit reached";
  if (max_abs(r) <= res.tolerance) res.report.message = "residual below tolerance";
  const double b = static_cast<double>(options.batch);
  const double beta = options.momentum.beta;
  VectorXd velocity = VectorXd::Zero(beta > 0.0 ? model.num_parameters() : 0);
  if (beta > 0.0) res.method += options.momentum.nesterov ? "+nesterov" : "+momentum";
  for (Index step = 1; step <= options.max_steps && max_abs(r) > res.tolerance; ++step) {
    detail::throw_if_interrupted("train_sgd");
    const std::vector<Index> batch =
        full ? std::vector<Index>() : draw_batch(options.sampling, n, options.batch, rng);
    const VectorXd grad = full ? model.gradient(x, y) : model.batch_gradient_unchecked(x, y, batch, b);
    const VectorXd theta = sgd_step(model.parameters(), grad, velocity, options);
    res.report.iterations = step;
    if (!theta.allFinite()) {
      res.report.message = "diverged: parameters overflowed at step " + std::to_string(step);
      res.report.status = Status::diverged;
      break;
    }
    model.set_parameters(theta);
    if (step % check_every != 0 && step != options.max_steps) continue;
    r = model.residuals(x, y);
    const double loss = 0.5 * r.squaredNorm() / static_cast<double>(n);
    res.loss_history.push_back(loss);
    if (options.observer && std::isfinite(loss)) options.observer(step, model);
    if (!std::isfinite(loss) || loss > options.divergence_factor * initial) {
      res.report.message = "diverged: loss " + detail::fmt(loss) + " at step " + std::to_string(step) +
                           " (initial " + detail::fmt(initial) + ")";
      res.report.status = Status::diverged;
      break;
    }
    if (max_abs(r) <= res.tolerance) res.report.message = "residual below tolerance";
  }
  if (res.report.status == Status::diverged)
    finish_diverged(res, model, x, y, watch);
  else
    finish(res, model, x, y, watch);
  return res;
}

Geometry geometry_at_minimum(const Mlp& model, const Eigen::Ref<const MatrixXd>& x,
                             const Eigen::Ref<const MatrixXd>& y, const MinimumCheck& check,
                             const ReductionOptions& reduction) {
  require(std::isfinite(check.residual_tolerance) && check.residual_tolerance > 0.0,
          "MinimumCheck::residual_tolerance", "must be finite and > 0, got " + detail::fmt(check.residual_tolerance));
  const MatrixXd r = model.residuals(x, y);
  const double max_residual = max_abs(r);
  const double tol = residual_tolerance_for(y, check.residual_tolerance);
  if (max_residual > tol && !check.allow_nonzero_residual)
    throw invalid_argument(
        "geometry_at_minimum: theta is not an interpolating minimum: max |f_k(x_i) - y_ik| = " +
        detail::fmt(max_residual) + " > tolerance " + detail::fmt(tol) + " (relative " +
        detail::fmt(check.residual_tolerance) +
        " x label scale); reach a minimum first (gauss_newton, minimum_norm_solution) or set "
        "allow_nonzero_residual to analyze the Gauss-Newton matrix anyway");
  const Index nc = x.rows() * model.outputs();
  const bool use_gram = reduction.space == Space::sample ||
                        (reduction.space == Space::automatic && model.num_parameters() >= nc);
  if (use_gram) return Geometry::from_gram(model.gram(x), model.outputs(), reduction);
  return Geometry::from_jacobian(model.jacobian(x), model.outputs(), reduction);
}

AlignmentSample alignment_at(const Mlp& model, const Eigen::Ref<const MatrixXd>& x,
                             const Eigen::Ref<const MatrixXd>& y, Index step) {
  const MatrixXd res = model.residuals(x, y);
  VectorXd r(res.size());
  for (Index i = 0; i < res.rows(); ++i) r.segment(i * res.cols(), res.cols()) = res.row(i).transpose();
  const MatrixXd k = model.gram(x);
  AlignmentSample a;
  a.step = step;
  a.loss = 0.5 * r.squaredNorm() / static_cast<double>(x.rows());
  a.g_frobenius = k.norm() / static_cast<double>(x.rows());
  a.mu = r.squaredNorm() > 0.0 ? alignment(k, model.outputs(), r) : NAN;
  return a;
}

}  // namespace sgdstab
