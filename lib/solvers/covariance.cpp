// The stationary second moment of linearized SGD at a non-interpolating
// minimum (theory/covariance.md).
#include "sgdstab/covariance.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/weight_decay.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

namespace {

CovarianceResult finish_covariance(CovarianceResult& out, const Eigen::VectorXd& d, const CovarianceOptions& options,
                                   const detail::Stopwatch& watch);

// Conjugate gradients on symmetric r x r matrices (Frobenius inner product)
// for M X = b, M symmetric positive definite, preconditioned entrywise by
// `inv_m` (all ones: none), from x. `what` names M in the error on a direction
// of non-positive curvature. Fills out.report (iterations, residual, status,
// message; matvecs are counted by `apply`) and out.covariance (symmetrized).
template <class Apply>
void matrix_cg(const Apply& apply, const Eigen::MatrixXd& b, const Eigen::MatrixXd& inv_m, Eigen::MatrixXd x,
               const CovarianceOptions& options, const std::string& where, const std::string& what,
               CovarianceResult& out) {
  auto dot = [](const Eigen::MatrixXd& u, const Eigen::MatrixXd& v) { return (u.array() * v.array()).sum(); };
  const double bnorm = b.norm();
  out.report.status = Status::not_converged;
  if (bnorm == 0.0) {  // no gradient noise (zero residual gradients, or B = n without replacement): Sigma = 0
    out.covariance = Eigen::MatrixXd::Zero(b.rows(), b.cols());
    out.report.status = Status::converged;
    out.report.message = "no gradient noise: the stationary covariance is 0";
    return;
  }
  Eigen::MatrixXd res = b - apply(x);
  res = 0.5 * (res + res.transpose()).eval();
  Eigen::MatrixXd zr = res.cwiseProduct(inv_m);
  Eigen::MatrixXd p = zr;
  double rz = dot(res, zr);
  for (Index it = 0; it < options.max_iterations; ++it) {
    out.report.residual = res.norm() / bnorm;
    if (out.report.residual <= options.tolerance) {
      out.report.status = Status::converged;
      break;
    }
    detail::throw_if_interrupted(where.c_str());
    // M's image is symmetric in exact arithmetic; kept so to the last bit, or the
    // iterates drift off the symmetric matrices the operators accept.
    Eigen::MatrixXd mp = apply(p);
    mp = 0.5 * (mp + mp.transpose()).eval();
    const double pmp = dot(p, mp);
    detail::require(pmp > 0.0, where,
                    what + " is not positive definite (rho(T) = " + detail::fmt(out.rho) +
                        " is within round-off of 1): no stationary covariance can be computed");
    const double alpha = rz / pmp;
    x += alpha * p;
    res -= alpha * mp;
    zr = res.cwiseProduct(inv_m);
    const double rz_new = dot(res, zr);
    p = zr + (rz_new / rz) * p;
    rz = rz_new;
    ++out.report.iterations;
  }
  out.report.message = out.report.status == Status::converged
                           ? "conjugate gradients converged in " + std::to_string(out.report.iterations) + " iterations"
                           : "conjugate gradients did not reach the tolerance in " +
                                 std::to_string(options.max_iterations) + " iterations (relative residual " +
                                 detail::fmt(out.report.residual) + "); the covariance is the last iterate";
  out.covariance = 0.5 * (x + x.transpose());
}

// Momentum's stationary delta-block X (theory/covariance.md, section 7): with
// the mean kernel G at lr and W = sqrt(G) entrywise, X = G o (b C_0(X) + N)
// is X = W o Y with the symmetric positive definite system
//   (I - b W o C_0(W o .) o W) Y = W o N,
// b = beta the scheme's factor, C_0 = D - H . H (D for Bernoulli), N the
// covariance of the batch gradient (beta Sigma_g at a minimum of the loss);
// with L2 weight decay lambda G is the kernel of d + lambda (section 8). CG.
// Fills out.covariance and the report (iterations, matvecs, residual, status).
void momentum_covariance(const Geometry& geometry, const Eigen::MatrixXd& noise, double lr, Index batch,
                         Sampling sampling, const CovarianceOptions& options, CovarianceResult& out) {
  const std::string where = "stationary_covariance (momentum)";
  const Index r = geometry.rank();
  const Eigen::VectorXd& d = geometry.hessian_eigenvalues();
  Eigen::MatrixXd g;
  const Eigen::VectorXd shifted = (d.array() + options.weight_decay).matrix();
  detail::require(detail::momentum_mean_kernel(shifted, lr, options.momentum, options.decoupled_weight_decay, g),
                  where,
                  "the kernel G of the mean dynamics has an entry <= 0 at lr = " + detail::fmt(lr) +
                      " (theory/momentum.md, section 5): the symmetric form does not apply");
  // Symmetric in exact arithmetic; the kernel's entries (i, j) and (j, i) may
  // differ in the last bit, which the operator's symmetry check would refuse.
  const Eigen::MatrixXd w = (0.5 * (g + g.transpose())).cwiseSqrt();
  const double b = sampling_factors(sampling, geometry.samples(), batch).beta;
  const bool bernoulli = sampling == Sampling::bernoulli;
  const SecondMomentOperator dop(geometry, 1, Sampling::with_replacement);  // Q at B = 1 with replacement: D
  auto apply = [&](const Eigen::MatrixXd& y) {
    ++out.report.matvecs;
    const Eigen::MatrixXd x = y.cwiseProduct(w);
    Eigen::MatrixXd c0 = dop.quadratic(x);
    if (!bernoulli) c0 -= d.asDiagonal() * x * d.asDiagonal();
    return Eigen::MatrixXd(y - b * c0.cwiseProduct(w));
  };
  const Eigen::MatrixXd rhs = w.cwiseProduct(noise);
  // From the answer without the multiplicative noise; out.covariance holds Y, then X = W o Y.
  matrix_cg(apply, rhs, Eigen::MatrixXd::Ones(r, r), rhs, options, where, "I - b W o C_0 o W", out);
  out.covariance = out.covariance.cwiseProduct(w);
  // A second moment is PSD: anything else means the system was not positive definite after all.
  const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(out.covariance, Eigen::EigenvaluesOnly)
                                 .eigenvalues();
  if (ev.size() > 0 && ev(0) < -1e-10 * std::max(std::abs(ev(ev.size() - 1)), 1e-300)) {
    out.report.status = Status::numerical_failure;
    out.report.message = "the momentum solve returned a Sigma with eigenvalue " + detail::fmt(ev(0)) +
                         " < 0 (rho(T) = " + detail::fmt(out.rho) + " may be within round-off of 1): not a covariance";
  }
}

}  // namespace

void CovarianceOptions::validate() const {
  detail::require(std::isfinite(tolerance) && tolerance > 0.0 && tolerance < 1.0, "CovarianceOptions",
                  "tolerance must be in (0, 1), got " + detail::fmt(tolerance));
  detail::require(max_iterations >= 1, "CovarianceOptions",
                  "max_iterations must be >= 1, got " + std::to_string(max_iterations));
  detail::require(std::isfinite(gradient_tolerance) && gradient_tolerance >= 0.0, "CovarianceOptions",
                  "gradient_tolerance must be finite and >= 0, got " + detail::fmt(gradient_tolerance));
  detail::require(top >= 0, "CovarianceOptions", "top must be >= 0, got " + std::to_string(top));
  momentum.validate();
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, "CovarianceOptions",
                  "weight_decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  detail::require(parameters.allFinite(), "CovarianceOptions", "parameters has a NaN or Inf entry");
  detail::require(std::isfinite(decoupled_weight_decay) && decoupled_weight_decay >= 0.0, "CovarianceOptions",
                  "decoupled_weight_decay must be finite and >= 0, got " + detail::fmt(decoupled_weight_decay));
  detail::require(weight_decay == 0.0 || decoupled_weight_decay == 0.0, "CovarianceOptions",
                  "give weight_decay (L2) or decoupled_weight_decay, not both");
  detail::require(decoupled_weight_decay == 0.0 || !momentum.nesterov, "CovarianceOptions",
                  "decoupled_weight_decay with Nesterov momentum is not covered (heavy-ball or plain SGD)");
  detail::require(parameters.size() == 0 || weight_decay > 0.0 || decoupled_weight_decay > 0.0,
                  "CovarianceOptions", "parameters (theta*) are for weight_decay > 0, which is 0");
}

CovarianceResult stationary_covariance(const Geometry& geometry, const Eigen::Ref<const Eigen::VectorXd>& residuals,
                                       double lr, Index batch, Sampling sampling, const CovarianceOptions& options) {
  const std::string where = "stationary_covariance";
  const Index n = geometry.samples(), c = geometry.outputs(), r = geometry.rank();
  detail::require(residuals.size() == n * c, where,
                  "residuals must have n C = " + std::to_string(n * c) + " entries (f(x_i) - y_i, sample-major), got " +
                      std::to_string(residuals.size()));
  detail::require(residuals.allFinite(), where, "the residuals have a NaN or Inf entry");
  // Per-sample gradients in reduced coordinates: g_i = Z_i^T r_i (eq. 2).
  const Eigen::MatrixXd& z = geometry.factor();
  Eigen::MatrixXd grads(r, n);
  for (Index i = 0; i < n; ++i) grads.col(i) = z.middleRows(i * c, c).transpose() * residuals.segment(i * c, c);
  return stationary_covariance_from_gradients(geometry, grads, lr, batch, sampling, options);
}

namespace {

// V = J^T Z (n diag d)^{-1} (eq. 5), p x r: orthonormal exactly when J is the
// geometry's Jacobian (checked to 1e-6).
Eigen::MatrixXd checked_basis(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                              const std::string& where) {
  const Index n = geometry.samples(), c = geometry.outputs();
  detail::require(jacobian.rows() == n * c, where,
                  "the Jacobian has " + std::to_string(jacobian.rows()) + " rows, the geometry n C = " +
                      std::to_string(n * c) + " (it must be the matrix the geometry was built from)");
  detail::require(jacobian.allFinite(), where, "the Jacobian has a NaN or Inf entry");
  const Eigen::MatrixXd& z = geometry.factor();
  const Eigen::VectorXd nd = static_cast<double>(n) * geometry.hessian_eigenvalues();
  const Eigen::MatrixXd v = (jacobian.transpose() * z).array().rowwise() / nd.transpose().array();
  const double off = (v.transpose() * v - Eigen::MatrixXd::Identity(v.cols(), v.cols())).cwiseAbs().maxCoeff();
  detail::require(off <= 1e-6, where,
                  "the Jacobian is not the one the geometry was built from (V^T V differs from I by " +
                      detail::fmt(off) + "; pass the same matrix, with --softmax/--curvature applied)");
  return v;
}

}  // namespace

Eigen::MatrixXd reduction_basis(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian) {
  return checked_basis(geometry, jacobian, "reduction_basis");
}

Eigen::MatrixXd reduced_gradients(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                  const Eigen::Ref<const Eigen::MatrixXd>& gradients) {
  const std::string where = "reduced_gradients";
  const Index n = geometry.samples();
  detail::require(gradients.rows() == n && gradients.cols() == jacobian.cols(), where,
                  "the gradients must be n x p = " + std::to_string(n) + " x " + std::to_string(jacobian.cols()) +
                      " (one row per sample), got " + std::to_string(gradients.rows()) + " x " +
                      std::to_string(gradients.cols()));
  detail::require(gradients.allFinite(), where, "the gradients have a NaN or Inf entry");
  const Eigen::MatrixXd v = checked_basis(geometry, jacobian, where);
  Eigen::MatrixXd out = v.transpose() * gradients.transpose();  // r x n: V^T g_i
  // Whatever of g_i is not in range(H): |g_i|^2 - |V^T g_i|^2 (V orthonormal).
  for (Index i = 0; i < n; ++i) {
    const double total = gradients.row(i).squaredNorm(), inside = out.col(i).squaredNorm();
    detail::require(std::abs(total - inside) <= 1e-12 * total + 1e-300, where,
                    "the gradient of sample " + std::to_string(i) + " has " +
                        detail::fmt(std::sqrt(std::abs(total - inside) / total)) +
                        " of its norm outside range(H): not a gradient of this model's loss at this point (J_i^T "
                        "times something)");
  }
  return out;
}

Eigen::VectorXd reduced_parameters(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                   const Eigen::Ref<const Eigen::VectorXd>& theta, double tolerance) {
  const std::string where = "reduced_parameters";
  detail::require(std::isfinite(tolerance) && tolerance >= 0.0, where,
                  "tolerance must be finite and >= 0, got " + detail::fmt(tolerance));
  detail::require(theta.size() == jacobian.cols(), where,
                  "theta must have p = " + std::to_string(jacobian.cols()) + " entries (the Jacobian's columns), got " +
                      std::to_string(theta.size()));
  detail::require(theta.allFinite(), where, "theta has a NaN or Inf entry");
  const Eigen::MatrixXd v = checked_basis(geometry, jacobian, where);
  Eigen::VectorXd out = v.transpose() * theta;
  // The part outside range(H), measured directly (|theta|^2 - |V^T theta|^2 would
  // cancel to ~1e-13 |theta|^2 from round-off alone).
  const double outside = (theta - v * out).norm(), total = theta.norm();
  detail::require(outside <= tolerance * total, where,
                  "theta has " + detail::fmt(total > 0.0 ? outside / total : 0.0) + " > " + detail::fmt(tolerance) +
                      " of its norm outside range(H): not a minimum of the regularized loss, where lambda theta = "
                      "-(1/n) sum g_i lies in range(H) (theory/covariance.md, section 8)");
  return out;
}

CovarianceResult stationary_covariance_from_gradients(const Geometry& geometry,
                                                      const Eigen::Ref<const Eigen::MatrixXd>& reduced, double lr,
                                                      Index batch, Sampling sampling,
                                                      const CovarianceOptions& options) {
  const detail::Stopwatch watch;
  const std::string where = "stationary_covariance";
  options.validate();
  detail::require(std::isfinite(lr) && lr > 0.0, where, "lr must be finite and > 0, got " + detail::fmt(lr));
  const Index n = geometry.samples(), r = geometry.rank();
  detail::require(reduced.rows() == r && reduced.cols() == n, where,
                  "reduced gradients must be r x n = " + std::to_string(r) + " x " + std::to_string(n) + ", got " +
                      std::to_string(reduced.rows()) + " x " + std::to_string(reduced.cols()));
  detail::require(reduced.allFinite(), where, "the gradients have a NaN or Inf entry");
  const SecondMomentOperator op(geometry, batch, sampling);  // checks B
  const Eigen::MatrixXd& grads = reduced;
  const Eigen::VectorXd mean = grads.rowwise().mean();
  // L2 decay lambda, or the decoupled mu (section 8): the point's pull lambda
  // theta*, or mu (1 - beta) theta*, balances the mean gradient.
  const double mu = options.decoupled_weight_decay;
  const double lambda = mu > 0.0 ? mu * (1.0 - options.momentum.beta) : options.weight_decay;
  if (lambda > 0.0)
    detail::require(options.parameters.size() == r, where,
                    "with weight decay the options' parameters must be theta* in reduced coordinates (r = " +
                        std::to_string(r) + " entries, reduced_parameters()), got " +
                        std::to_string(options.parameters.size()));
  // The gradient of the minimized loss: (1/n) sum g_i, plus lambda theta* with weight decay.
  const Eigen::VectorXd stationarity = lambda > 0.0 ? Eigen::VectorXd(mean + lambda * options.parameters) : mean;
  double mean_norm_of_each = 0.0;
  for (Index i = 0; i < n; ++i)
    mean_norm_of_each += (lambda > 0.0 ? Eigen::VectorXd(grads.col(i) + lambda * options.parameters).norm()
                                       : grads.col(i).norm()) /
                         static_cast<double>(n);
  detail::require(stationarity.norm() <= options.gradient_tolerance * mean_norm_of_each, where,
                  lambda > 0.0
                      ? "not a minimum of the regularized loss: |(1/n) sum g_i + lambda theta*| = " +
                            detail::fmt(stationarity.norm()) + " > gradient_tolerance (" +
                            detail::fmt(options.gradient_tolerance) + ") * mean |g_i + lambda theta*| = " +
                            detail::fmt(mean_norm_of_each)
                      : "not a minimum: |(1/n) sum g_i| = " + detail::fmt(mean.norm()) + " > gradient_tolerance (" +
                            detail::fmt(options.gradient_tolerance) + ") * mean |g_i| = " +
                            detail::fmt(mean_norm_of_each) +
                            " (the per-sample gradients must sum to zero at a minimum)");
  Eigen::MatrixXd sigma_g = grads * grads.transpose() / static_cast<double>(n);
  sigma_g = 0.5 * (sigma_g + sigma_g.transpose()).eval();  // exactly symmetric (a GEMM need not be)

  CovarianceResult out;
  out.lr = lr;
  out.batch = batch;
  out.sampling = sampling;
  out.momentum = options.momentum;
  out.weight_decay = options.weight_decay;
  out.decoupled_weight_decay = mu;
  out.gradient_noise_trace = sigma_g.trace();
  out.mean_gradient_norm = stationarity.norm();
  const bool heavy = options.momentum.beta > 0.0;
  // Plain SGD: the decoupled shrink is L2's (theta <- (1 - lr mu) theta - lr g_B).
  const RadiusResult rho =
      heavy ? (mu > 0.0 ? detail::decayed_momentum_radius(geometry, lr, batch, sampling, options.momentum, 0.0, mu,
                                                          SolverOptions{}, where.c_str())
               : lambda > 0.0
                   ? weight_decay_momentum_spectral_radius(geometry, lr, batch, sampling, options.momentum, lambda)
                   : momentum_spectral_radius(geometry, lr, batch, sampling, options.momentum))
            : lambda > 0.0 ? weight_decay_spectral_radius(geometry, lr, batch, sampling, lambda)
                           : spectral_radius(geometry, lr, batch, sampling);
  detail::require(rho.converged(), where, "the spectral radius at lr did not converge: " + rho.report.message);
  out.rho = rho.rho;
  detail::require(rho.rho < 1.0, where,
                  "rho(T) = " + detail::fmt(rho.rho) + " >= 1 at lr = " + detail::fmt(lr) +
                      ": SGD is not mean-square stable there and has no stationary covariance");
  const Eigen::VectorXd& d = geometry.hessian_eigenvalues();
  // The covariance of the batch gradient, N = beta Sigma_g + (alpha - 1) gbar gbar^T
  // (section 8; gbar = 0 without weight decay: beta Sigma_g, section 2).
  const SamplingFactors f = op.factors();
  const Eigen::MatrixXd noise = lambda > 0.0 ? Eigen::MatrixXd(f.beta * sigma_g + (f.alpha - 1.0) * mean * mean.transpose())
                                             : Eigen::MatrixXd(f.beta * sigma_g);
  if (heavy) {
    momentum_covariance(geometry, noise, lr, batch, sampling, options, out);
    return finish_covariance(out, d, options, watch);
  }

  // (A - lr Q) X = lr beta Sigma_g (eq. 4), CG preconditioned by A^{-1}. With
  // weight decay (section 8): (a A + lambda (2 - lr lambda) - lr Q) X = lr N,
  // a = 1 - lr lambda, N the covariance of g_B (gbar = -lambda theta*: centred
  // for with and without replacement, not for Bernoulli), preconditioned by
  // the inverse of its first two terms (entrywise).
  const double a = 1.0 - lr * lambda, shift = lambda * (2.0 - lr * lambda);
  const Eigen::MatrixXd inv_a =
      (a * (d.replicate(1, r) + d.transpose().replicate(r, 1)).array() + shift).cwiseInverse().matrix();
  const Eigen::MatrixXd b = lr * noise;
  auto apply = [&](const Eigen::MatrixXd& x) {  // lambda = 0: a = 1, shift = 0, A - lr Q exactly
    ++out.report.matvecs;
    return Eigen::MatrixXd(a * op.anticommutator(x) + shift * x - lr * op.quadratic(x));
  };
  // From the preconditioned right-hand side (lambda = 0: A^{-1} b, the answer at lr -> 0).
  matrix_cg(apply, b, inv_a, b.cwiseProduct(inv_a), options, where,
            lambda > 0.0 ? "a A + lambda (2 - lr lambda) - lr Q" : "A - lr Q", out);
  return finish_covariance(out, d, options, watch);
}

namespace {

CovarianceResult finish_covariance(CovarianceResult& out, const Eigen::VectorXd& d, const CovarianceOptions& options,
                                   const detail::Stopwatch& watch) {
  const Index r = d.size();
  out.trace = out.covariance.trace();
  out.excess_loss = 0.5 * out.covariance.diagonal().dot(d);
  if (options.top > 0 && r > 0) {
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(out.covariance, Eigen::EigenvaluesOnly);
    const Index k = std::min(options.top, r);
    out.top_eigenvalues = es.eigenvalues().tail(k).reverse();
  }
  out.report.seconds = watch.seconds();
  return out;
}

}  // namespace

}  // namespace sgdstab
