// Momentum SGD's second-moment map and its spectral radius: theory/momentum.md,
// sections 1-4. The threshold is in momentum_threshold.cpp, the region in region.cpp.
#include "sgdstab/momentum.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <string>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/weight_decay.hpp"
#include "solvers/eigensolve.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

MomentumOperator::MomentumOperator(const SecondMomentOperator& op, double lr, Momentum momentum, double weight_decay,
                                   double decoupled_weight_decay)
    : op_(&op), lr_(lr), momentum_(momentum), weight_decay_(weight_decay), decoupled_(decoupled_weight_decay) {
  momentum.validate();
  detail::require(std::isfinite(lr) && lr > 0, "MomentumOperator",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, "MomentumOperator",
                  "weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  detail::require(std::isfinite(decoupled_weight_decay) && decoupled_weight_decay >= 0.0, "MomentumOperator",
                  "decoupled weight decay must be finite and >= 0, got " + detail::fmt(decoupled_weight_decay));
  detail::require(decoupled_weight_decay == 0.0 || !momentum.nesterov, "MomentumOperator",
                  "decoupled weight decay is defined for heavy-ball momentum (AdamW), not Nesterov");
  const double b = momentum.beta;
  // theory/momentum.md, eq. 2: M0 = [[I, m01 I], [0, beta I]], e = (e0, 1); the decoupled
  // decay puts a = 1 - lr mu in M0's top-left block (theory/adaptive.md, section 5), in apply().
  m01_ = momentum.nesterov ? -b * b : -b;
  e0_ = momentum.nesterov ? -(1.0 + b) : -1.0;
}

MatrixXd MomentumOperator::apply(const MatrixXd& z) const {
  const Index r = op_->dimension();
  detail::require(z.rows() == 2 * r && z.cols() == 2 * r, "MomentumOperator::apply",
                  "Z must be 2r x 2r = " + std::to_string(2 * r) + " x " + std::to_string(2 * r) + ", got " +
                      std::to_string(z.rows()) + " x " + std::to_string(z.cols()));
  const double b = momentum_.beta, m = m01_, e = e0_, lr = lr_;
  const auto x = z.topLeftCorner(r, r);
  const auto y = z.topRightCorner(r, r);
  const auto w = z.bottomRightCorner(r, r);
  const VectorXd& d = op_->geometry().hessian_eigenvalues();
  const double lam = weight_decay_;
  // theory/momentum.md, eq. 3: L = M0 [X; Y^T] H, Q = Q(X); with weight decay
  // (section 8) H -> H + lambda I in L and Q(X) -> E[(H_xi + lambda) X (H_xi + lambda)].
  const VectorXd dl = d.array() + lam;
  // Decoupled decay mu (theory/adaptive.md, section 5): M0's top-left block is
  // a I, a = 1 - lr mu, so M0 Z M0^T and L = M0 [X; Y^T] H take a where they took 1.
  const double a = 1.0 - lr * decoupled_;
  const MatrixXd ltop = (a * x + m * y.transpose()) * dl.asDiagonal();
  const MatrixXd lbot = b * (y.transpose() * dl.asDiagonal());
  MatrixXd q = op_->quadratic(MatrixXd(x));
  if (lam > 0.0) {
    const MatrixXd xd = x * d.asDiagonal();
    q += lam * (xd + xd.transpose()) + (lam * lam) * x;
  }
  MatrixXd out(2 * r, 2 * r);
  out.topLeftCorner(r, r) = (a * a) * x + (a * m) * (y + y.transpose()) + (m * m) * w +
                            (lr * e) * (ltop + ltop.transpose()) + (lr * lr * e * e) * q;
  out.topRightCorner(r, r) = b * (a * y + m * w) + lr * (ltop + e * lbot.transpose()) + (lr * lr * e) * q;
  out.bottomLeftCorner(r, r) = out.topRightCorner(r, r).transpose();
  out.bottomRightCorner(r, r) = (b * b) * w + lr * (lbot + lbot.transpose()) + (lr * lr) * q;
  return out;
}

std::vector<MatrixXd> MomentumOperator::propagate(const MatrixXd& z0, Index steps) const {
  detail::require(steps >= 0, "MomentumOperator::propagate", "steps must be >= 0, got " + std::to_string(steps));
  std::vector<MatrixXd> out{z0};
  for (Index t = 0; t < steps; ++t) out.push_back(apply(out.back()));
  return out;
}

void MomentumOperator::perform_op(const Scalar* x_in, Scalar* y_out) const {
  detail::throw_if_interrupted("momentum spectral radius");
  const Index n2 = dimension();
  const MatrixXd z = unpack(Eigen::Map<const VectorXd>(x_in, rows()), n2);
  Eigen::Map<VectorXd>(y_out, rows()) = pack(apply(z));
  ++applications_;
}

namespace {

// The dense matrix of T on packed coordinates and its eigenvalue of largest modulus.
template <class Op>
bool dense_rho(const Op& op, double& rho, double& imag, Index& matvecs) {
  const Index m = op.rows();
  const MatrixXd t =
      detail::explicit_matrix(detail::FunctionOperator(m, [&op](const double* x, double* y) { op.perform_op(x, y); }));
  matvecs += m;
  Eigen::VectorXcd values;
  if (!detail::general_eigenvalues(t, values)) return false;
  Index best = 0;
  for (Index k = 1; k < m; ++k)
    if (std::abs(values(k)) > std::abs(values(best))) best = k;
  rho = std::abs(values(best));
  imag = values(best).imag();
  return true;
}

}  // namespace

namespace {

// rho by Arnoldi on the packed coordinates (theory/momentum.md, section 4):
// true with res filled when it converged; else res.rho is not to be trusted
// and res.report holds the restarts and applications spent.
template <class Op>
bool arnoldi_radius(const Op& op, const SolverOptions& options, Index ncv, RadiusResult& res) {
  const Index m = op.rows();
  // Start from the identity (PSD): the Perron eigenvector of a positive map is PSD.
  const VectorXd start = pack(MatrixXd::Identity(op.dimension(), op.dimension()));
  detail::FunctionOperator f(m, [&op](const double* x, double* y) { op.perform_op(x, y); });
  // Largest real part, one value: the Perron root rho is real and >= every
  // modulus, so it is also the eigenvalue of largest real part, and no other
  // eigenvalue ties with it there (Re mu = rho forces mu = rho), where complex
  // pairs can tie with it in modulus. Largest magnitude locked onto |lambda| =
  // 0.703 with a small residual where rho = 0.7096 (weight decay 0.3
  // lambda_max, lr 0.3 / (lambda_max + lambda), r = 4: a test of
  // MomentumWeightDecay), and asking it for three values did not converge there.
  const detail::ComplexEigenpair a = detail::arnoldi_top(f, start, std::max<Index>(ncv, 3), /*largest_real=*/true,
                                                         options.max_iterations, options.tolerance);
  res.report.iterations = a.report.iterations;
  res.report.matvecs = op.applications();
  res.rho = std::abs(a.value);
  if (!a.report.converged()) return false;
  const std::complex<double> lambda = a.value;
  res.report.method = Method::lanczos;
  // Spectra's convergence test uses Ritz estimates, which on this non-normal
  // operator have been seen to accept values far above |T| (rho = 23 and 107
  // for ncv = 20 and 60 where power iteration gives < 1, rank 500, beta 0.9):
  // the true residual |T v - lambda v| / |lambda| of the (complex) eigenvector
  // decides, two applications (real and imaginary parts).
  const Eigen::VectorXcd v = a.complex_vector.normalized();
  VectorXd tr(m), ti(m);
  const VectorXd vr = v.real(), vi = v.imag();
  op.perform_op(vr.data(), tr.data());
  op.perform_op(vi.data(), ti.data());
  res.report.matvecs = op.applications();
  const Eigen::VectorXcd tv = tr.cast<std::complex<double>>() + std::complex<double>(0.0, 1.0) * ti.cast<std::complex<double>>();
  res.report.residual = (tv - lambda * v).norm() / std::max(res.rho, 1e-300);
  const double accept = std::max(1e3 * options.tolerance, 1e-8);
  if (!(res.report.residual <= accept)) {
    res.report.status = Status::not_converged;
    res.report.message = "Arnoldi reported convergence to |lambda| = " + detail::fmt(res.rho) +
                         " but its eigenvector's residual is " + detail::fmt(res.report.residual) + " > " +
                         detail::fmt(accept);
    return false;
  }
  res.report.status = Status::converged;
  res.report.message = "converged (Arnoldi, " + std::to_string(res.report.iterations) + " restarts)";
  return true;
}

// Heavy-ball momentum's second-moment map whose mean is a MeanBasis's
// (theory/adaptive.md, section 6): on symmetric 2p x 2p Z = [[X, Y], [Y^T, S]]
// in the mean's eigenbasis U, T(Z) = M Z M^T + lr^2 e e^T (x) C(X) with
// M = [[I - lr diag(a), -beta I], [lr diag(a), beta I]], e = (-1, 1) and
// C(X) = W [Q(W^T X W) - diag(d) W^T X W diag(d)] W^T (Q: E[H_B N H_B] in the
// geometry's reduced coordinates, W = U^T V, the mean's `basis`).
class MeanBasisMomentumOperator {
 public:
  using Scalar = double;
  MeanBasisMomentumOperator(const SecondMomentOperator& q, const detail::MeanBasis& mean, const VectorXd& d,
                            double lr, double beta)
      : q_(&q), mean_(&mean), d_(&d), lr_(lr), beta_(beta), p_(mean.eigenvalues.size()) {}
  Index dimension() const { return 2 * p_; }
  Index rows() const { return packed_size(dimension()); }
  Index cols() const { return rows(); }
  Index applications() const { return applications_; }
  double workspace_bytes() const { return q_->workspace_bytes() + 8.0 * 12.0 * static_cast<double>(p_ * p_); }

  void perform_op(const Scalar* x_in, Scalar* y_out) const {
    detail::throw_if_interrupted("momentum spectral radius");
    const Index p = p_;
    const MatrixXd z = unpack(Eigen::Map<const VectorXd>(x_in, rows()), 2 * p);
    const VectorXd one_minus = 1.0 - lr_ * mean_->eigenvalues.array();
    const VectorXd la = lr_ * mean_->eigenvalues;
    const auto x = z.topLeftCorner(p, p), y = z.topRightCorner(p, p), sb = z.bottomRightCorner(p, p);
    // M Z = [[A X - beta Y^T, A Y - beta S], [D X + beta Y^T, D Y + beta S]], then (M Z) M^T.
    const MatrixXd t11 = one_minus.asDiagonal() * x - beta_ * y.transpose();
    const MatrixXd t12 = one_minus.asDiagonal() * y - beta_ * sb;
    const MatrixXd t21 = la.asDiagonal() * x + beta_ * y.transpose();
    const MatrixXd t22 = la.asDiagonal() * y + beta_ * sb;
    MatrixXd out(2 * p, 2 * p);
    out.topLeftCorner(p, p) = t11 * one_minus.asDiagonal() - beta_ * t12;
    out.topRightCorner(p, p) = t11 * la.asDiagonal() + beta_ * t12;
    out.bottomRightCorner(p, p) = t21 * la.asDiagonal() + beta_ * t22;
    // The noise on the delta block, through V.
    const MatrixXd& basis = mean_->basis;
    const MatrixXd n = basis.transpose() * x * basis;
    MatrixXd qn;
    q_->quadratic_into(n, qn);
    qn -= d_->asDiagonal() * n * d_->asDiagonal();
    const MatrixXd c = lr_ * lr_ * (basis * qn * basis.transpose());
    out.topLeftCorner(p, p) += c;      // e e^T = [[1, -1], [-1, 1]]
    out.topRightCorner(p, p) -= c;
    out.bottomRightCorner(p, p) += c;
    out.bottomLeftCorner(p, p) = out.topRightCorner(p, p).transpose();
    Eigen::Map<VectorXd>(y_out, rows()) = pack(out);
    ++applications_;
  }

 private:
  const SecondMomentOperator* q_;
  const detail::MeanBasis* mean_;
  const VectorXd* d_;
  double lr_, beta_;
  Index p_;
  mutable Index applications_ = 0;
};

// rho of `op` by Arnoldi, with the dense fallback (theory/momentum.md, section 4).
template <class Op>
RadiusResult radius_of(const Op& op, double fixed, const SolverOptions& options, RadiusResult res);

// No sampling noise (B = n without replacement, Bernoulli at B = n): M is deterministic and acts on each
// eigen-direction of H (eigenvalue d) as the 2 x 2 matrix m(d) of eq. 1, so rho(T) = rho(M)^2 = max_d rho(m(d))^2
// (theory/momentum.md, section 4), with rho(m(d)) the larger root modulus of mu^2 - t mu + det. Arnoldi would
// meet the cluster of T's eigenvalues near 1 that small d give and stall there (rho is then often not found).
RadiusResult full_batch_momentum_radius(const VectorXd& d, double lr, const Momentum& mo, RadiusResult res) {
  const double beta = mo.beta;
  double top = -1.0;
  for (Index k = 0; k < d.size(); ++k) {
    const double t = mo.nesterov ? 1.0 + beta - lr * (1.0 + beta) * d(k) : 1.0 + beta - lr * d(k);
    const double det = mo.nesterov ? beta * (1.0 - lr * d(k)) : beta;
    const std::complex<double> root = std::sqrt(std::complex<double>(t * t - 4.0 * det));
    top = std::max({top, std::abs((t + root) / 2.0), std::abs((t - root) / 2.0)});
  }
  res.rho = top * top;
  res.report.status = d.size() > 0 && std::isfinite(res.rho) ? Status::converged : Status::numerical_failure;
  res.report.method = Method::dense;
  res.report.iterations = 1;
  res.report.residual = 0.0;
  res.report.message = "closed form: no sampling noise at B = n, rho = max over H's eigenvalues of rho(m(d))^2";
  return res;
}

RadiusResult momentum_radius_untimed(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                      Momentum momentum, const SolverOptions& options, double weight_decay,
                                      const char* where, double decoupled = 0.0) {
  options.validate();
  momentum.validate();
  detail::require(std::isfinite(lr) && lr > 0, where, "learning rate must be finite and > 0, got " + detail::fmt(lr));
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, where,
                  "weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  check_batch(batch, geometry.samples(), where);
  RadiusResult res;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  // No noise: beta = 0 and alpha = 1 (c = alpha + beta = 1), i.e. E[H_xi S H_xi] = H S H.
  const auto [c, s] = region_coordinates(sampling, geometry.samples(), static_cast<double>(batch));
  if (weight_decay == 0.0 && decoupled == 0.0 && c == 1.0 && s == 0.0)
    return full_batch_momentum_radius(geometry.hessian_eigenvalues(), lr, momentum, res);
  const SecondMomentOperator q(geometry, batch, sampling);
  MomentumOperator op(q, lr, momentum, weight_decay, decoupled);
  return radius_of(op, q.workspace_bytes() + 8.0 * 8.0 * static_cast<double>(op.rows()), options, res);
}

template <class Op>
RadiusResult radius_of(const Op& op, double fixed, const SolverOptions& options, RadiusResult res) {
  const Index m = op.rows();
  Method method = detail::resolve_method(options, m);
  std::string history;
  if (method == Method::lanczos) {
    const Index ncv = std::min<Index>(m, options.subspace_dimension > 0 ? options.subspace_dimension : 20);
    check_memory(fixed + 8.0 * static_cast<double>(m) * static_cast<double>(ncv + 4),
                 "momentum spectral radius (Arnoldi, ncv = " + std::to_string(ncv) + ")", options.memory_limit_bytes);
    if (arnoldi_radius(op, options, ncv, res)) return res;
    history = res.report.status == Status::not_converged && !res.report.message.empty()
                  ? res.report.message + "; "
                  : "Arnoldi did not converge in " + std::to_string(options.max_iterations) + " restarts (ncv = " +
                        std::to_string(ncv) + "); ";
    if (m > options.dense_fallback_max_dimension || !detail::dense_fits(m, options, fixed)) {
      res.report.status = Status::not_converged;
      res.report.method = Method::lanczos;
      res.report.message = history + "the dense fallback (" + std::to_string(m) + " x " + std::to_string(m) +
                           ") is over dense_fallback_max_dimension or the memory limit: rho is not to be trusted";
      return res;
    }
    method = Method::dense;
  }
  check_memory(fixed + detail::dense_bytes(m) + 8.0 * static_cast<double>(m) * static_cast<double>(m),
               "momentum spectral radius (dense, " + std::to_string(m) + " x " + std::to_string(m) + ")",
               options.memory_limit_bytes);
  double imag = 0.0;
  Index matvecs = res.report.matvecs;
  const bool ok = dense_rho(op, res.rho, imag, matvecs);
  res.report.matvecs = matvecs;
  res.report.iterations += 1;
  res.report.method = Method::dense;
  res.report.residual = 0.0;
  res.report.status = ok ? Status::converged : Status::numerical_failure;
  res.report.message = history + (ok ? std::string("converged (dense)")
                                     : std::string("the dense eigensolver (real Schur form) failed"));
  return res;
}

}  // namespace

RadiusResult momentum_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                      Momentum momentum, const SolverOptions& options) {
  return detail::timed(
      [&] { return momentum_radius_untimed(geometry, lr, batch, sampling, momentum, options, 0.0, "momentum_spectral_radius"); });
}

RadiusResult weight_decay_momentum_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                                   Momentum momentum, double weight_decay,
                                                   const SolverOptions& options) {
  return detail::timed([&] {
    return momentum_radius_untimed(geometry, lr, batch, sampling, momentum, options, weight_decay,
                                   "weight_decay_momentum_spectral_radius");
  });
}

RadiusResult detail::mean_basis_momentum_radius(const Geometry& g, const MeanBasis& mean, double lr, Index batch,
                                               Sampling sampling, const Momentum& mo, const SolverOptions& options,
                                               const char* where) {
  options.validate();
  mo.validate();
  detail::require(!mo.nesterov, where, "Nesterov momentum is not covered here (heavy-ball or plain)");
  detail::require(std::isfinite(lr) && lr > 0, where, "learning rate must be finite and > 0, got " + detail::fmt(lr));
  const SecondMomentOperator q(g, batch, sampling);
  const MeanBasisMomentumOperator op(q, mean, g.hessian_eigenvalues(), lr, mo.beta);
  RadiusResult res;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  return radius_of(op, op.workspace_bytes() + 8.0 * 8.0 * static_cast<double>(op.rows()), options, res);
}

RadiusResult detail::decayed_momentum_radius(const Geometry& g, double lr, Index batch, Sampling sampling,
                                             const Momentum& mo, double weight_decay, double decoupled,
                                             const SolverOptions& options, const char* where) {
  return momentum_radius_untimed(g, lr, batch, sampling, mo, options, weight_decay, where, decoupled);
}

}  // namespace sgdstab
