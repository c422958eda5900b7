// One shared subspace for lambda_max((1 - s) diag(p) + s R), many s:
// theory/region.md, sections 3-5.
#include "family.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "check.hpp"
#include "eigensolve.hpp"
#include "interrupt_detail.hpp"
#include "linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::detail {

using Eigen::MatrixXd;
using Eigen::VectorXd;

double family_bytes(Index m, Index k) {
  // V and W (m x k each), three work vectors of length m.
  return 8.0 * (2.0 * static_cast<double>(k) + 3.0) * static_cast<double>(m);
}

Index family_subspace(Index m, const SolverOptions& opt, double fixed_bytes, const std::string& what) {
  Index k = opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, 64);
  const Index floor_k = std::min<Index>(m, 4);
  const double limit = opt.memory_limit_bytes > 0 ? opt.memory_limit_bytes
                                                  : static_cast<double>(available_memory_bytes());
  if (opt.subspace_dimension == 0 && limit > 0)
    while (k > floor_k && fixed_bytes + family_bytes(m, k) > 0.8 * limit) --k;
  check_memory(fixed_bytes + family_bytes(m, k),
               what + " (shared subspace of " + std::to_string(k) + " vectors of length " + std::to_string(m) + ")",
               opt.memory_limit_bytes);
  return k;
}

namespace {

// The Rayleigh-Ritz data of one member in the current subspace.
struct Ritz {
  double theta = 0.0, second = -std::numeric_limits<double>::infinity();
  VectorXd y;       // top eigenvector of the projected matrix
  MatrixXd basis;   // all its eigenvectors, descending
};

// lambda_max - theta <= rho^2 / (theta - theta_2 - rho) when that gap is
// wider than rho (Kato-Temple with the second Ritz value standing in for the
// rest of the spectrum), else rho (theory/region.md, section 4). The gap
// estimate is only trusted once it certifies the tolerance: before that the
// Ritz gap can be far wider than the true one, and the bound is rho.
double error_bound(double rho, const Ritz& z, double tol) {
  const double gap = z.theta - z.second - rho;
  if (std::isfinite(gap) && gap > rho) {
    const double refined = rho * rho / gap;
    if (refined <= tol * std::abs(z.theta)) return std::min(rho, refined);
  }
  return rho;
}

class Subspace {
 public:
  Subspace(const VectorXd& p, const ApplyFn& apply, Index kmax)
      : p_(p), apply_(apply), m_(p.size()), kmax_(kmax), v_(m_, kmax), w_(m_, kmax), gp_(kmax, kmax), gr_(kmax, kmax) {}

  Index size() const { return k_; }
  Index capacity() const { return kmax_; }
  Index applications() const { return applications_; }
  const VectorXd& diagonal() const { return p_; }


  // Orthonormalizes x against V (classical Gram-Schmidt, repeated while a
  // pass cancels more than 99 % of the norm: one pass leaves an orthogonality
  // error of about eps times the cancellation factor), appends it and its image R x.
  // Returns false when x lies in span(V) to rounding.
  bool add(VectorXd x) {
    const double original = x.norm();
    if (!(original > 0) || !std::isfinite(original)) return false;
    double before = original;
    VectorXd c(kmax_);
    for (int pass = 0; pass < 3 && k_ > 0; ++pass) {
      tmul(v_, x.data(), c.data());                                    // c = V' x
      gemv(false, m_, k_, -1.0, v_.data(), m_, c.data(), 1.0, x.data());  // x -= V c
      const double after = x.norm();
      if (after > 0.01 * before) break;
      before = after;
    }
    const double nrm = x.norm();
    if (!(nrm > 1e-13 * original)) return false;
    v_.col(k_) = x / nrm;
    apply_(v_.col(k_).data(), w_.col(k_).data());
    ++applications_;
    // Column k of V'PV and V'RV in one pass over V: V' [p o v_k, w_k].
    const Index k1 = k_ + 1;
    pair_.resize(m_, 2);
    pair_.col(0) = p_.cwiseProduct(v_.col(k_));
    pair_.col(1) = w_.col(k_);
    MatrixXd cols(k1, 2);
    gemm_t(k1, cols);
    gp_.col(k_).head(k1) = cols.col(0);
    gr_.col(k_).head(k1) = cols.col(1);
    gp_.row(k_).head(k_) = gp_.col(k_).head(k_).transpose();
    gr_.row(k_).head(k_) = gr_.col(k_).head(k_).transpose();
    k_ = k1;
    return true;
  }

  Ritz ritz(double s) const {
    const MatrixXd h = (1.0 - s) * gp_.topLeftCorner(k_, k_) + s * gr_.topLeftCorner(k_, k_);
    Eigen::SelfAdjointEigenSolver<MatrixXd> es(h);
    Ritz z;
    z.theta = es.eigenvalues()(k_ - 1);
    if (k_ > 1) z.second = es.eigenvalues()(k_ - 2);
    z.basis = es.eigenvectors().rowwise().reverse();
    z.y = z.basis.col(0);
    return z;
  }

  // r = M(s) V y - theta V y.
  VectorXd residual(double s, const Ritz& z) const {
    VectorXd v(m_), r(m_);
    gemv(false, m_, k_, 1.0, v_.data(), m_, z.y.data(), 0.0, v.data());
    gemv(false, m_, k_, s, w_.data(), m_, z.y.data(), 0.0, r.data());
    r += ((1.0 - s) * p_.array() - z.theta).matrix().cwiseProduct(v);
    return r;
  }

  VectorXd expand(const VectorXd& y) const {
    VectorXd v(m_);
    gemv(false, m_, k_, 1.0, v_.data(), m_, y.data(), 0.0, v.data());
    return v / v.norm();
  }
  double project_p(const VectorXd& y) const { return y.dot(gp_.topLeftCorner(k_, k_) * y); }
  double project_r(const VectorXd& y) const { return y.dot(gr_.topLeftCorner(k_, k_) * y); }

  // Thick restart: keep the span of the first `keep` columns of the
  // orthonormal k x k basis Y (V <- V Y, W <- W Y, in row blocks).
  void restart(const MatrixXd& basis, Index keep) {
    const MatrixXd y = basis.leftCols(keep);
    const Index block = 2048;
    MatrixXd tmp;
    for (Index row = 0; row < m_; row += block) {
      const Index nb = std::min(block, m_ - row);
      tmp.noalias() = v_.block(row, 0, nb, k_) * y;
      v_.block(row, 0, nb, keep) = tmp;
      tmp.noalias() = w_.block(row, 0, nb, k_) * y;
      w_.block(row, 0, nb, keep) = tmp;
    }
    const MatrixXd gp = y.transpose() * gp_.topLeftCorner(k_, k_) * y;
    const MatrixXd gr = y.transpose() * gr_.topLeftCorner(k_, k_) * y;
    gp_.topLeftCorner(keep, keep) = 0.5 * (gp + gp.transpose());
    gr_.topLeftCorner(keep, keep) = 0.5 * (gr + gr.transpose());
    k_ = keep;
  }

 private:
  // out = V(:, 0:k)' x (BLAS dgemv: this and the products below dominate the
  // solver's own cost, theory/region.md section 5).
  void tmul(const MatrixXd& a, const double* x, double* out) const {
    gemv(true, m_, k_, 1.0, a.data(), m_, x, 0.0, out);
  }
  void gemm_t(Index k1, MatrixXd& out) const {
    // out (k1 x 2) = V(:, 0:k1)' pair_
    gemm(true, false, k1, 2, m_, 1.0, v_.data(), m_, pair_.data(), m_, 0.0, out.data(), k1);
  }

  const VectorXd& p_;
  const ApplyFn& apply_;
  Index m_, kmax_, k_ = 0;
  MatrixXd v_, w_, gp_, gr_;
  MatrixXd pair_;
  Index applications_ = 0;
};

void record(FamilyMember& out, const Subspace& sub, const Ritz& z, double rho, double tol, bool want_vector) {
  out.value = z.theta;
  out.residual = rho;
  out.error = error_bound(rho, z, tol);
  out.tangent_p = sub.project_p(z.y);
  out.tangent_r = sub.project_r(z.y);
  if (want_vector) out.vector = sub.expand(z.y);
}

// The expansion vector: Davidson's correction with the free part of the
// diagonal, t = r / (theta - (1 - s) p), denominators kept >= 1e-3 theta in
// magnitude (theory/region.md, section 5). At s = 1 it is r / theta: Lanczos.
VectorXd davidson(const VectorXd& p, double s, double theta, const VectorXd& r) {
  const double floor = std::max(1e-3 * std::abs(theta), std::numeric_limits<double>::min());
  VectorXd t(r.size());
  for (Index j = 0; j < r.size(); ++j) {
    double den = theta - (1.0 - s) * p(j);
    if (std::abs(den) < floor) den = den < 0 ? -floor : floor;
    t(j) = r(j) / den;
  }
  return t;
}

// One member in the shared subspace; `cap` bounds the applications it may spend.
void solve_member(Subspace& sub, FamilyMember& out, const VectorXd& start, double tol, Index cap, Index& restarts,
                  bool want_vector) {
  out.method = Method::lanczos;
  const Index before = sub.applications();
  if (sub.size() == 0 && !sub.add(start)) {
    out.status = Status::numerical_failure;
    out.message = "the start vector is zero or not finite";
    return;
  }
  const Index m = start.size();
  while (true) {
    const Ritz z = sub.ritz(out.s);
    const VectorXd r = sub.residual(out.s, z);
    const double rho = r.norm();
    out.matvecs = sub.applications() - before;
    const bool done = sub.size() == m || out.matvecs >= cap;
    record(out, sub, z, rho, tol, false);
    if (want_vector && (done || out.error <= tol * std::abs(out.value))) out.vector = sub.expand(z.y);
    if (!std::isfinite(out.value) || !std::isfinite(rho)) {
      out.status = Status::numerical_failure;
      out.message = "the Ritz value or residual is not finite";
      return;
    }
    if (out.error <= tol * std::abs(out.value) || sub.size() == m) {
      out.status = Status::converged;
      return;
    }
    if (out.matvecs >= cap) {
      out.status = Status::not_converged;
      out.message = "did not converge: not certified after " + std::to_string(out.matvecs) + " applications (error bound " +
                    fmt(out.error / std::abs(out.value)) + " relative)";
      return;
    }
    const VectorXd ritz_vector = want_vector ? sub.expand(z.y) : VectorXd();
    if (sub.size() == sub.capacity()) {
      sub.restart(z.basis, std::max<Index>(1, sub.capacity() / 2));
      ++restarts;
    }
    // The Davidson direction, else the plain residual; when neither adds a
    // direction the subspace is invariant to rounding.
    if (!sub.add(davidson(sub.diagonal(), out.s, z.theta, r)) && !sub.add(r)) {
      out.vector = ritz_vector;
      out.status = out.error <= 1e3 * tol * std::abs(out.value) ? Status::converged : Status::not_converged;
      out.message = "the subspace became invariant (residual " + fmt(rho) + ")";
      return;
    }
  }
}

// R as an explicit m x m matrix (m applications).
MatrixXd dense_r(const ApplyFn& apply, Index m) {
  MatrixXd r(m, m);
  VectorXd e = VectorXd::Zero(m);
  for (Index j = 0; j < m; ++j) {
    e(j) = 1.0;
    apply(e.data(), r.col(j).data());
    e(j) = 0.0;
  }
  return 0.5 * (r + r.transpose());
}

// lambda_max((1 - s) diag(p) + s R) by LAPACK; error = the residual norm.
void dense_member(const VectorXd& p, const MatrixXd& r, FamilyMember& out, bool want_vector) {
  out.method = Method::dense;
  MatrixXd a = out.s * r;
  a.diagonal() += (1.0 - out.s) * p;
  const MatrixXd m = a;
  VectorXd w;
  try {
    symmetric_eigen_or_throw(a, w, "dense eigensolver");
  } catch (const numerical_error& e) {
    out.status = Status::numerical_failure;
    out.message = e.what();
    return;
  }
  const Index n = p.size();
  const VectorXd v = a.col(n - 1);
  out.value = w(n - 1);
  out.residual = (m * v - out.value * v).norm();
  out.error = out.residual;
  out.tangent_p = v.dot(p.cwiseProduct(v));
  out.tangent_r = v.dot(r * v);
  if (want_vector) out.vector = v;
  out.status = Status::converged;
  out.message = "converged";
}

}  // namespace

namespace {

// The shared subspace over all members, largest s first (the members with
// most of R in them are the hard ones). Returns the members it could not certify.
std::vector<std::size_t> subspace_members(const VectorXd& p, const ApplyFn& counted, const VectorXd& start,
                                          const SolverOptions& opt, Index kmax, bool want_vectors, FamilyResult& res) {
  Subspace sub(p, counted, kmax);
  std::vector<std::size_t> order(res.members.size()), pending;
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return res.members[a].s > res.members[b].s; });
  const Index cap = opt.max_iterations * std::max<Index>(1, kmax - kmax / 2);
  for (std::size_t j : order) {
    solve_member(sub, res.members[j], start, opt.tolerance, cap, res.restarts, want_vectors);
    if (!res.members[j].converged()) pending.push_back(j);
    else res.members[j].message = "converged";
  }
  return pending;
}

// The dense method for the members in `pending` (R built once, m applications).
void dense_members(const VectorXd& p, const ApplyFn& counted, const Index& applications,
                   const std::vector<std::size_t>& pending, bool fallback, bool want_vectors, FamilyResult& res) {
  const Index before = applications;
  const MatrixXd r = dense_r(counted, p.size());
  for (std::size_t j : pending) {
    const std::string history = res.members[j].message;
    dense_member(p, r, res.members[j], want_vectors);
    if (j == pending.front()) res.members[j].matvecs += applications - before;  // the shared build
    if (fallback) res.members[j].message = history + "; fell back to the dense method";
  }
}

}  // namespace

FamilyResult family_top(const VectorXd& p, const ApplyFn& apply_r, const std::vector<double>& s,
                        const VectorXd& start, const SolverOptions& opt, double fixed_bytes, const std::string& what,
                        bool want_vectors) {
  opt.validate();
  const Index m = p.size();
  require(start.size() == m, "family_top", "the start vector has the wrong length");
  FamilyResult res;
  res.members.resize(s.size());
  for (std::size_t j = 0; j < s.size(); ++j) {
    require(s[j] > 0.0 && s[j] <= 1.0, "family_top", "s must lie in (0, 1], got " + fmt(s[j]));
    res.members[j].s = s[j];
  }
  Index applications = 0;
  const ApplyFn counted = [&](const double* x, double* y) {
    throw_if_interrupted("eigensolver");
    const auto t0 = std::chrono::steady_clock::now();
    apply_r(x, y);
    res.apply_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++applications;
  };
  std::vector<std::size_t> pending(s.size());
  std::iota(pending.begin(), pending.end(), std::size_t{0});
  const bool lanczos = resolve_method(opt, m) == Method::lanczos;
  if (lanczos) {
    res.subspace_dimension = family_subspace(m, opt, fixed_bytes, what);
    pending = subspace_members(p, counted, start, opt, res.subspace_dimension, want_vectors, res);
  } else {
    res.method = Method::dense;
  }
  if (!pending.empty() && (!lanczos || (m <= opt.dense_fallback_max_dimension && dense_fits(m, opt, fixed_bytes)))) {
    check_memory(fixed_bytes + dense_bytes(m), what + " (dense " + std::to_string(m) + " x " + std::to_string(m) + ")",
                 opt.memory_limit_bytes);
    dense_members(p, counted, applications, pending, lanczos, want_vectors, res);
  } else {
    for (std::size_t j : pending)
      res.members[j].message += "; the dense fallback is too large (m = " + std::to_string(m) + ")";
  }
  res.matvecs = applications;
  return res;
}

}  // namespace sgdstab::detail
