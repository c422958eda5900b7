// Momentum SGD's second-moment map and its spectral radius: theory/momentum.md.
#include "sgdstab/momentum.hpp"

#include <Spectra/GenEigsSolver.h>

#include <Eigen/Dense>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <complex>
#include <string>

#include "check.hpp"
#include "eigensolve.hpp"
#include "family.hpp"
#include "interrupt_detail.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

void Momentum::validate() const {
  detail::require(std::isfinite(beta) && beta >= 0.0 && beta < 1.0, "Momentum",
                  "beta must satisfy 0 <= beta < 1, got " + detail::fmt(beta));
}

MomentumOperator::MomentumOperator(const SecondMomentOperator& op, double lr, Momentum momentum)
    : op_(&op), lr_(lr), momentum_(momentum) {
  momentum.validate();
  detail::require(std::isfinite(lr) && lr > 0, "MomentumOperator",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  const double b = momentum.beta;
  // theory/momentum.md, eq. 2: M0 = [[I, m01 I], [0, beta I]], e = (e0, 1).
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
  // theory/momentum.md, eq. 3: L = M0 [X; Y^T] H, Q = Q(X).
  const MatrixXd ltop = (x + m * y.transpose()) * d.asDiagonal();
  const MatrixXd lbot = b * (y.transpose() * d.asDiagonal());
  const MatrixXd q = op_->quadratic(MatrixXd(x));
  MatrixXd out(2 * r, 2 * r);
  out.topLeftCorner(r, r) = x + m * (y + y.transpose()) + (m * m) * w + (lr * e) * (ltop + ltop.transpose()) +
                            (lr * lr * e * e) * q;
  out.topRightCorner(r, r) = b * (y + m * w) + lr * (ltop + e * lbot.transpose()) + (lr * lr * e) * q;
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

void unpack_into_full(const double* x, Index r, MatrixXd& s) {
  s = unpack(Eigen::Map<const VectorXd>(x, packed_size(r)), r);
}

// The dense matrix of T on packed coordinates and its eigenvalue of largest modulus.
bool dense_rho(const MomentumOperator& op, double& rho, double& imag, Index& matvecs) {
  const Index m = op.rows();
  MatrixXd t(m, m);
  VectorXd unit = VectorXd::Zero(m);
  for (Index k = 0; k < m; ++k) {
    unit(k) = 1.0;
    op.perform_op(unit.data(), t.col(k).data());
    unit(k) = 0.0;
  }
  matvecs += m;
  Eigen::EigenSolver<MatrixXd> es(t, /*computeEigenvectors=*/false);
  if (es.info() != Eigen::Success) return false;
  Index best = 0;
  for (Index k = 1; k < m; ++k)
    if (std::abs(es.eigenvalues()(k)) > std::abs(es.eigenvalues()(best))) best = k;
  rho = std::abs(es.eigenvalues()(best));
  imag = es.eigenvalues()(best).imag();
  return true;
}

}  // namespace

RadiusResult momentum_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                      Momentum momentum, const SolverOptions& options) {
  options.validate();
  momentum.validate();
  detail::require(std::isfinite(lr) && lr > 0, "momentum_spectral_radius",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  const SecondMomentOperator q(geometry, batch, sampling);
  MomentumOperator op(q, lr, momentum);
  const Index m = op.rows();
  RadiusResult res;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  const double fixed = q.workspace_bytes() + 8.0 * 8.0 * static_cast<double>(m);
  Method method = detail::resolve_method(options, m);
  std::string history;
  if (method == Method::lanczos) {
    const Index ncv = std::min<Index>(m, options.subspace_dimension > 0 ? options.subspace_dimension : 20);
    check_memory(fixed + 8.0 * static_cast<double>(m) * static_cast<double>(ncv + 4),
                 "momentum spectral radius (Arnoldi, ncv = " + std::to_string(ncv) + ")", options.memory_limit_bytes);
    Spectra::GenEigsSolver<MomentumOperator> eigs(op, 1, std::max<Index>(ncv, 3));
    // Start from the identity (PSD): the Perron eigenvector of a positive map is PSD.
    const VectorXd start = pack(MatrixXd::Identity(op.dimension(), op.dimension()));
    eigs.init(start.data());
    const Index nconv = eigs.compute(Spectra::SortRule::LargestMagn, options.max_iterations, options.tolerance);
    res.report.iterations = eigs.num_iterations();
    res.report.matvecs = op.applications();
    if (eigs.info() == Spectra::CompInfo::Successful && nconv >= 1) {
      const std::complex<double> lambda = eigs.eigenvalues()(0);
      res.rho = std::abs(lambda);
      res.report.method = Method::lanczos;
      res.report.status = Status::converged;
      if (std::abs(lambda.imag()) <= 1e-8 * res.rho) {
        const VectorXd v = eigs.eigenvectors().col(0).real().normalized();
        VectorXd tv(m);
        op.perform_op(v.data(), tv.data());
        res.report.matvecs = op.applications();
        res.report.residual = (tv - lambda.real() * v).norm() / std::max(res.rho, 1e-300);
      } else {
        res.report.residual = std::numeric_limits<double>::quiet_NaN();
      }
      res.report.message = "converged (Arnoldi, " + std::to_string(res.report.iterations) + " restarts)";
      return res;
    }
    history = "Arnoldi did not converge in " + std::to_string(options.max_iterations) + " restarts (ncv = " +
              std::to_string(ncv) + "); ";
    if (m > options.dense_fallback_max_dimension || !detail::dense_fits(m, options, fixed)) {
      res.report.status = Status::not_converged;
      res.report.method = Method::lanczos;
      res.report.message = history + "the dense fallback (" + std::to_string(m) + " x " + std::to_string(m) +
                           ") is over dense_fallback_max_dimension or the memory limit: rho is not to be trusted";
      res.rho = std::abs(eigs.eigenvalues().size() > 0 ? eigs.eigenvalues()(0) : 0.0);
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

namespace {

// (m01, e0) of theory/momentum.md, eq. 2.
std::pair<double, double> momentum_coefficients(const Momentum& mo) {
  return {mo.nesterov ? -mo.beta * mo.beta : -mo.beta, mo.nesterov ? -(1.0 + mo.beta) : -1.0};
}

// The limit of the mean dynamics (eq. 5-6).
double mean_limit(const Momentum& mo, double lambda_max) {
  return (mo.nesterov ? 2.0 * (1.0 + mo.beta) / (1.0 + 2.0 * mo.beta) : 2.0 * (1.0 + mo.beta)) / lambda_max;
}

// The kernel G_eta of eq. 8: G_ij = eta^2 [S_ij]_11 with S_ij - m_i S_ij m_j^T = e e^T,
// m_i the 2 x 2 mean transition on the i-th eigen-direction, and its
// derivative in eta (differentiating the 4 x 4 system: s' = -A^{-1} A' s).
// False if an entry of G is not > 0.
bool mean_kernel(const Eigen::VectorXd& d, double eta, const Momentum& mo, MatrixXd& g, MatrixXd* dg = nullptr) {
  // Plain variables, not a structured binding: C++17 lambdas cannot capture those.
  const std::pair<double, double> coefficients = momentum_coefficients(mo);
  const double m01 = coefficients.first, e0 = coefficients.second;
  const Index r = d.size();
  g.resize(r, r);
  if (dg) dg->resize(r, r);
  const Eigen::Vector4d rhs(e0 * e0, e0, e0, 1.0);  // vec(e e^T), column-major
  auto m = [&](Index i) {
    Eigen::Matrix2d out;
    out << 1.0 + eta * e0 * d(i), m01, eta * d(i), mo.beta;
    return out;
  };
  auto dm = [&](Index i) {  // d m_i / d eta
    Eigen::Matrix2d out;
    out << e0 * d(i), 0.0, d(i), 0.0;
    return out;
  };
  bool positive = true;
  for (Index j = 0; j < r; ++j) {
    const Eigen::Matrix2d mj = m(j), dmj = dm(j);
    for (Index i = j; i < r; ++i) {
      const Eigen::Matrix2d mi = m(i), dmi = dm(i);
      Eigen::Matrix4d a = Eigen::Matrix4d::Identity(), da = Eigen::Matrix4d::Zero();
      for (int p = 0; p < 2; ++p)
        for (int q = 0; q < 2; ++q) {
          a.block<2, 2>(2 * p, 2 * q) -= mj(p, q) * mi;  // I - kron(m_j, m_i)
          da.block<2, 2>(2 * p, 2 * q) -= dmj(p, q) * mi + mj(p, q) * dmi;
        }
      const Eigen::PartialPivLU<Eigen::Matrix4d> lu(a);
      const Eigen::Vector4d sol = lu.solve(rhs);
      const double v = eta * eta * sol(0);
      g(i, j) = g(j, i) = v;
      if (dg) {
        const Eigen::Vector4d dsol = -lu.solve(da * sol);
        (*dg)(i, j) = (*dg)(j, i) = 2.0 * eta * sol(0) + eta * eta * dsol(0);
      }
      if (!(v > 0) || !std::isfinite(v)) positive = false;
    }
  }
  return positive;
}

}  // namespace

MomentumThresholdResult momentum_threshold(const Geometry& geometry, Index batch, Sampling sampling, Momentum momentum,
                                           const SolverOptions& options, Index scan_points) {
  options.validate();
  momentum.validate();
  detail::require(scan_points >= 0, "momentum_threshold", "scan_points must be >= 0, got " + std::to_string(scan_points));
  const SecondMomentOperator q(geometry, batch, sampling);
  const VectorXd& d = geometry.hessian_eigenvalues();
  const Index r = d.size(), m = packed_size(r);
  MomentumThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.momentum = momentum;
  res.eta_mean = mean_limit(momentum, geometry.lambda_max());
  res.report.method = detail::resolve_method(options, m);
  const SamplingFactors f = q.factors();
  // C = (a - 1) H X H + b D(X) vanishes at full batch: the mean's limit is the answer.
  if (f.alpha == 1.0 && f.beta == 0.0) {
    res.eta_star = res.eta_low = res.eta_high = res.eta_mean;
    res.stable_intervals = {{0.0, res.eta_mean}};
    res.report.status = Status::converged;
    res.report.error_bound = 0.0;
    res.report.method = Method::dense;
    res.report.message = "converged (full batch: the limit of the mean dynamics, theory/momentum.md eq. 5-6)";
    return res;
  }
  // kappa(eta) = lambda_max(W o C(W o X)), W = sqrt(G_eta) entrywise (eq. 9).
  // R_eta is indefinite (C is a covariance map, not a PSD operator):
  // R_eta >= -(1 - a) W o (H X H) o W, so the shift sigma = (1 - a) max_ij
  // G_ij d_i d_j makes R_eta + sigma I positive semidefinite, and the
  // eigensolver's relative accuracy is taken on kappa + sigma.
  MatrixXd w, s, y, cy;
  double sigma = 0.0;
  const auto apply = [&](const double* x, double* out) {
    unpack_into_full(x, r, s);
    y = s.cwiseProduct(w);
    q.quadratic_into(y, cy);
    cy -= d.asDiagonal() * y * d.asDiagonal();
    Eigen::Map<VectorXd>(out, m) = pack(cy.cwiseProduct(w)) + sigma * Eigen::Map<const VectorXd>(x, m);
  };
  Index applications = 0;
  VectorXd start = pack(MatrixXd::Identity(r, r)) / std::sqrt(static_cast<double>(r));
  const double fixed = q.workspace_bytes() + 8.0 * 6.0 * static_cast<double>(r) * static_cast<double>(r);
  std::string failure;
  Status failed = Status::converged;
  // kappa(eta) and its logarithmic slope d log kappa / d log eta = eta sum_ij
  // v_ij^2 G'_ij / G_ij (v the unit eigenvector: the Hellmann-Feynman
  // derivative of eq. 9 with W' / W = G' / (2 G); no application of C).
  double slope = 0.0;
  const auto kappa = [&](double eta) -> double {
    MatrixXd g, dg;
    if (!mean_kernel(d, eta, momentum, g, &dg)) {
      failed = Status::numerical_failure;
      failure = "the kernel G of the mean dynamics has an entry <= 0 at lr = " + detail::fmt(eta) +
                " (theory/momentum.md, section 5): the symmetric form does not apply";
      return std::numeric_limits<double>::quiet_NaN();
    }
    w = g.cwiseSqrt();
    sigma = (1.0 - f.alpha) * (g.array() * (d * d.transpose()).array()).maxCoeff();
    // The shared-subspace solver (family.hpp) on the single member s = 1:
    // thick-restart Lanczos with full reorthogonalization and an a
    // posteriori error bound, or dense for small m.
    const detail::FamilyResult fr =
        detail::family_top(VectorXd::Zero(m), apply, {1.0}, start, options, fixed, "momentum threshold", true);
    const detail::FamilyMember& top = fr.members.front();
    applications += fr.matvecs;
    res.report.iterations += 1;
    if (!top.converged()) {
      failed = top.status;
      failure = "kappa at lr = " + detail::fmt(eta) + ": " + top.message;
      return std::numeric_limits<double>::quiet_NaN();
    }
    res.report.method = top.method;
    res.report.residual = std::max(res.report.residual, top.residual / std::max(top.value, 1e-300));
    if (top.vector.size() == m) {
      start = top.vector;
      const MatrixXd v = unpack(top.vector, r);
      slope = eta * (v.array().square() * (dg.array() / g.array())).sum() / v.squaredNorm();
    }
    res.evaluations.push_back({eta, top.value - sigma});
    return top.value - sigma;
  };
  const double tol = options.tolerance;
  // Bracket [lo, hi] of the first crossing: kappa(lo) < 1 <= kappa(hi); hi =
  // eta_mean (kappa unbounded there) until an unstable point is seen.
  double lo = 0.0, hi = res.eta_mean, khi = std::numeric_limits<double>::infinity();
  double eta = 0.5 * res.eta_mean;
  if (scan_points > 0) {
    // The grid first (its stable stretches are reported below); start at the
    // first grid point past the last stable one before the first unstable.
    for (Index k = 1; k <= scan_points && failed == Status::converged; ++k) {
      const double x = res.eta_mean * static_cast<double>(k) / static_cast<double>(scan_points + 1);
      const double kv = kappa(x);
      if (!std::isfinite(khi)) {
        if (kv < 1.0) lo = x;
        else if (std::isfinite(kv)) hi = x, khi = kv;
      }
    }
    eta = lo > 0 ? (std::isfinite(khi) ? std::sqrt(lo * hi) : 0.5 * (lo + res.eta_mean)) : 0.5 * hi;
  }
  // Safeguarded Newton on log kappa against log eta (slope from the eigenvector).
  bool mean_limited = false, done = false;
  for (int it = 0; it < 100 && failed == Status::converged && !done; ++it) {
    const double kv = kappa(eta);
    if (!std::isfinite(kv)) break;
    if (kv < 1.0) lo = std::max(lo, eta);
    else if (eta < hi || !std::isfinite(khi)) hi = eta, khi = kv;
    const double step = slope > 0 ? -std::log(kv) / slope : 0.0;
    double next = eta * std::exp(step);
    if (std::abs(std::log(kv)) <= 0.5 * tol && lo > 0 && std::isfinite(khi)) {
      done = (hi - lo) <= tol * hi;
      if (!done) {
        // Converged on one side: certify the other with a point just past the root.
        next = kv < 1.0 ? eta * (1.0 + tol) : eta * (1.0 - tol);
      }
    } else if (std::abs(std::log(kv)) <= 0.5 * tol) {
      next = kv < 1.0 ? eta * (1.0 + tol) : eta * (1.0 - tol);
    }
    if (done) break;
    // Keep inside the bracket: bisect (geometrically) when Newton leaves it.
    const double upper = std::isfinite(khi) ? hi : res.eta_mean;
    if (!(next > lo && next < upper)) next = lo > 0 ? std::sqrt(lo * upper) : 0.5 * std::min(eta, upper);
    if (!std::isfinite(khi) && next >= res.eta_mean * (1.0 - tol)) {
      mean_limited = true;
      break;
    }
    if (lo > 0 && std::isfinite(khi) && (hi - lo) <= tol * hi) break;
    eta = next;
  }
  res.report.matvecs = applications;
  if (failed != Status::converged) {
    res.report.status = failed;
    res.report.message = failure;
    res.eta_star = lo;
    return res;
  }
  if (!(lo > 0)) {
    res.report.status = Status::not_converged;
    res.report.message = "no learning rate with kappa < 1 was found below eta_mean = " + detail::fmt(res.eta_mean);
    return res;
  }
  if (mean_limited || !std::isfinite(khi)) {
    // kappa < 1 up to within the tolerance of eta_mean: the mean dynamics limit the step.
    res.eta_star = res.eta_high = res.eta_mean;
    res.eta_low = lo;
  } else {
    // The root from the bracket's last evaluations (log-linear interpolation).
    double klo = 0.0;
    for (const auto& [x, kv] : res.evaluations)
      if (x == lo) klo = kv;
    const double la = std::log(lo), lb = std::log(hi), fa = std::log(klo), fb = std::log(khi);
    res.eta_star = (fb - fa) != 0.0 ? std::exp(lb - fb * (lb - la) / (fb - fa)) : std::sqrt(lo * hi);
    res.eta_star = std::clamp(res.eta_star, lo, hi);
    res.eta_low = lo;
    res.eta_high = hi;
  }
  res.report.error_bound = (res.eta_high - res.eta_low) / res.eta_low;
  const bool ok = res.report.error_bound <= std::max(10.0 * tol, 1e-12) || mean_limited;
  res.report.status = ok ? Status::converged : Status::not_converged;
  res.report.message = ok ? "converged (" + std::to_string(res.report.iterations) + " evaluations of kappa)"
                          : "the bracket [" + detail::fmt(res.eta_low) + ", " + detail::fmt(res.eta_high) +
                                "] did not shrink to the tolerance";
  // The stable set: (0, eta*), then, from the scan, any stretch above eta* where kappa < 1 again.
  res.stable_intervals = {{0.0, res.eta_star}};
  if (scan_points > 0) {
    std::vector<std::pair<double, double>> pts = res.evaluations;
    std::sort(pts.begin(), pts.end());
    double open = -1.0;
    for (const auto& [eta, kv] : pts) {
      if (eta <= res.eta_high) continue;
      if (kv < 1.0 && open < 0) open = eta;
      if (kv >= 1.0 && open > 0) res.stable_intervals.push_back({open, eta}), open = -1.0;
    }
    if (open > 0) res.stable_intervals.push_back({open, res.eta_mean});
    if (res.stable_intervals.size() > 1)
      res.report.message += "; the stable set is not an interval: see stable_intervals (grid resolution)";
  }
  return res;
}

std::vector<MomentumThresholdResult> momentum_threshold_curve(const Geometry& geometry, const std::vector<Index>& batches,
                                                              Sampling sampling, Momentum momentum,
                                                              const SolverOptions& options) {
  detail::require(!batches.empty(), "momentum_threshold_curve", "the list of batch sizes is empty");
  for (const Index b : batches) check_batch(b, geometry.samples(), "momentum_threshold_curve");
  std::vector<MomentumThresholdResult> out;
  out.reserve(batches.size());
  for (const Index b : batches) out.push_back(momentum_threshold(geometry, b, sampling, momentum, options));
  return out;
}

}  // namespace sgdstab
