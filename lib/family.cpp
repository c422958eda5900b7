// One shared subspace for lambda_max((1 - s) diag(p) + s R), many s:
// theory/region.md, sections 3-5.
#include "family.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "check.hpp"
#include "eigensolve.hpp"
#include "interrupt_detail.hpp"
#include "linalg.hpp"
#include "parallel.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::detail {

using Eigen::MatrixXd;
using Eigen::VectorXd;

double family_bytes(Index m, Index k) {
  // V and W (m x k each); the work vectors V y, r, t, the pair [p o v, R v]
  // and one expanded Ritz vector: six of length m.
  return 8.0 * (2.0 * static_cast<double>(k) + 6.0) * static_cast<double>(m);
}

Index family_subspace(Index m, const SolverOptions& opt, double fixed_bytes, const std::string& what, Index members) {
  // One member: 16 (each step reads the whole subspace twice or more, and at
  // nC = 4096 16 vectors cost one application more than 64 and save a third
  // of the solver's own time); several: 64, so later members find more of
  // what they need in it (theory/region.md, section 5).
  const Index automatic = members > 1 ? 64 : 16;
  Index k = opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, automatic);
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

// Large buffers: ask for transparent huge pages before the first touch
// (fewer page faults while V and W fill; a hint, ignored where unsupported).
void advise_huge_pages(double* data, Index count) {
#ifdef __linux__
  const std::uintptr_t huge = std::uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t end = begin + static_cast<std::uintptr_t>(count) * sizeof(double);
  const std::uintptr_t lo = (begin + huge - 1) & ~(huge - 1), hi = end & ~(huge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)data;
  (void)count;
#endif
}

class Subspace {
 public:
  Subspace(const VectorXd& p, const ApplyFn& apply, const ApplyFn& low, Index kmax)
      : p_(p),
        apply_(apply),
        low_(low),
        low_active_(static_cast<bool>(low)),
        m_(p.size()),
        kmax_(kmax),
        v_(m_, kmax),
        w_(m_, kmax),
        gp_(kmax, kmax),
        gr_(kmax, kmax),
        vy_(m_),
        r_(m_),
        t_(m_),
        pair_(m_, 2) {
    advise_huge_pages(v_.data(), v_.size());
    advise_huge_pages(w_.data(), w_.size());
  }

  Index size() const { return k_; }
  Index capacity() const { return kmax_; }
  Index applications() const { return applications_; }
  Index low_applications() const { return low_applications_; }
  const VectorXd& diagonal() const { return p_; }
  // Whether new images come from the single-precision R (theory/region.md, section 7).
  bool low_active() const { return low_active_; }

  // Forgets everything (single-precision images included); double from here on.
  void discard_low() {
    k_ = 0;
    low_active_ = false;
  }

  // The end of the single-precision phase: keep the span of the first `keep`
  // columns of the Ritz basis and recompute their images in double, so that
  // every Ritz value and residual from here on is a double-precision one.
  void promote(const MatrixXd& basis, Index keep) {
    restart(basis, keep);
    reapply_in_double();
  }
  // The same for the whole current subspace.
  void reapply_in_double() {
    low_active_ = false;
    for (Index j = 0; j < k_; ++j) {
      apply_(v_.col(j).data(), w_.col(j).data());
      ++applications_;
    }
    MatrixXd g(k_, k_);
    gemm(true, false, k_, k_, m_, 1.0, v_.data(), m_, w_.data(), m_, 0.0, g.data(), k_);
    gr_.topLeftCorner(k_, k_) = 0.5 * (g + g.transpose());
  }

  // The work vector t, allocated once like r and V y (each is m long: at
  // m = 8.4 M a fresh allocation per step cost more in page faults than the arithmetic).
  VectorXd& expansion() { return t_; }

  // Orthonormalizes x against V (classical Gram-Schmidt, repeated while a
  // pass cancels more than 99 % of the norm: one pass leaves an orthogonality
  // error of about eps times the cancellation factor), appends it and its image R x.
  // Returns false when x lies in span(V) to rounding. x is overwritten.
  bool add(VectorXd& x) {
    const double original = norm(x);
    if (!(original > 0) || !std::isfinite(original)) return false;
    double before = original, nrm = original;
    VectorXd c(kmax_);
    for (int pass = 0; pass < 3 && k_ > 0; ++pass) {
      tmul(v_, x.data(), c.data());                                    // c = V' x
      gemv(false, m_, k_, -1.0, v_.data(), m_, c.data(), 1.0, x.data());  // x -= V c
      nrm = norm(x);
      if (nrm > 0.01 * before) break;
      before = nrm;
    }
    if (!(nrm > 1e-13 * original)) return false;
    {
      const double inv = 1.0 / nrm;
      double* v = v_.col(k_).data();
      const double* xs = x.data();
      parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
        for (Index j = lo; j < hi; ++j) v[j] = xs[j] * inv;
      });
    }
    (low_active_ ? low_ : apply_)(v_.col(k_).data(), w_.col(k_).data());
    ++applications_;
    if (low_active_) ++low_applications_;
    // Column k of V'PV and V'RV in one pass over V: V' [p o v_k, w_k].
    const Index k1 = k_ + 1;
    {
      const double* v = v_.col(k_).data();
      const double* w = w_.col(k_).data();
      const double* p = p_.data();
      double* pv = pair_.col(0).data();
      double* pw = pair_.col(1).data();
      parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
        for (Index j = lo; j < hi; ++j) {
          pv[j] = p[j] * v[j];
          pw[j] = w[j];
        }
      });
    }
    MatrixXd cols(k1, 2);
    gemm_t(k1, cols);
    gp_.col(k_).head(k1) = cols.col(0);
    gr_.col(k_).head(k1) = cols.col(1);
    gp_.row(k_).head(k_) = gp_.col(k_).head(k_).transpose();
    gr_.row(k_).head(k_) = gr_.col(k_).head(k_).transpose();
    k_ = k1;
    return true;
  }
  bool add_expansion() { return add(t_); }
  // The residual as the next candidate (when the expansion adds nothing).
  bool add_residual() {
    t_ = r_;
    return add(t_);
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

  // r = M(s) V y - theta V y into r_, and in the same pass the
  // Davidson expansion vector into expansion(): t = r / (theta - (1 - s) p),
  // denominators kept >= 1e-3 theta in magnitude (theory/region.md, section 5;
  // at s = 1 it is r / theta: Lanczos). Returns |r|.
  double residual_and_expansion(double s, const Ritz& z) {
    gemv(false, m_, k_, 1.0, v_.data(), m_, z.y.data(), 0.0, vy_.data());
    gemv(false, m_, k_, s, w_.data(), m_, z.y.data(), 0.0, r_.data());
    const double theta = z.theta, free = 1.0 - s;
    const double floor = std::max(1e-3 * std::abs(theta), std::numeric_limits<double>::min());
    const double* p = p_.data();
    const double* vy = vy_.data();
    double* r = r_.data();
    double* t = t_.data();
    return std::sqrt(parallel_sum(m_, kChunk, [&](Index lo, Index hi) {
      double sum = 0.0;
      for (Index j = lo; j < hi; ++j) {
        const double fp = free * p[j];
        const double rj = r[j] + (fp - theta) * vy[j];
        r[j] = rj;
        sum += rj * rj;
        double den = theta - fp;
        if (std::abs(den) < floor) den = den < 0 ? -floor : floor;
        t[j] = rj / den;
      }
      return sum;
    }));
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
    // Row blocks through BLAS dgemm (threaded): V and W are read once.
    const Index block = std::min<Index>(m_, Index{1} << 15);
    MatrixXd tmp(block, keep);
    for (Index row = 0; row < m_; row += block) {
      const Index nb = std::min(block, m_ - row);
      for (MatrixXd* a : {&v_, &w_}) {
        gemm(false, false, nb, keep, k_, 1.0, a->data() + row, m_, y.data(), k_, 0.0, tmp.data(), block);
        a->block(row, 0, nb, keep) = tmp.topRows(nb);
      }
    }
    const MatrixXd gp = y.transpose() * gp_.topLeftCorner(k_, k_) * y;
    const MatrixXd gr = y.transpose() * gr_.topLeftCorner(k_, k_) * y;
    gp_.topLeftCorner(keep, keep) = 0.5 * (gp + gp.transpose());
    gr_.topLeftCorner(keep, keep) = 0.5 * (gr + gr.transpose());
    k_ = keep;
  }

 private:
  // Level-1 work on m-vectors in parallel (memory-bound: two cores read
  // about twice as fast as one; lib/parallel.hpp), in chunks of kChunk.
  static constexpr Index kChunk = Index{1} << 16;
  double norm(const VectorXd& x) const {
    const double* xs = x.data();
    return std::sqrt(parallel_sum(x.size(), kChunk, [xs](Index lo, Index hi) {
      double s = 0.0;
      for (Index j = lo; j < hi; ++j) s += xs[j] * xs[j];
      return s;
    }));
  }

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
  const ApplyFn& low_;
  bool low_active_;
  Index m_, kmax_, k_ = 0;
  MatrixXd v_, w_, gp_, gr_;
  VectorXd vy_, r_, t_;
  MatrixXd pair_;
  Index applications_ = 0, low_applications_ = 0;
};

void record(FamilyMember& out, const Subspace& sub, const Ritz& z, double rho, double tol, bool want_vector) {
  out.value = z.theta;
  out.residual = rho;
  out.error = error_bound(rho, z, tol);
  out.tangent_p = sub.project_p(z.y);
  out.tangent_r = sub.project_r(z.y);
  if (want_vector) out.vector = sub.expand(z.y);
}

// The single-precision phase ends at this relative residual (single
// precision resolves about 7e-7 on the clustered class of bench/), or after
// kLowStall steps without a 10 % gain once below 100 times it (4 kLowStall
// above: Krylov residuals plateau early on, which is no reason to stop);
// kLowKeep Ritz vectors are kept (theory/region.md, section 7).
constexpr double kLowTarget = 1e-6;
constexpr int kLowStall = 4;
constexpr Index kLowKeep = 4;

// One member in the shared subspace; `cap` bounds the applications it may spend.
void solve_member(Subspace& sub, FamilyMember& out, const VectorXd& start, double tol, Index cap, Index& restarts,
                  bool want_vector) {
  out.method = Method::lanczos;
  const Index before = sub.applications();
  if (sub.size() == 0 && !sub.add(sub.expansion() = start)) {
    out.status = Status::numerical_failure;
    out.message = "the start vector is zero or not finite";
    return;
  }
  const Index m = start.size();
  double best_low = std::numeric_limits<double>::infinity();
  int since_best = 0;
  while (true) {
    const Ritz z = sub.ritz(out.s);
    const double rho = sub.residual_and_expansion(out.s, z);
    out.matvecs = sub.applications() - before;
    const bool done = sub.size() == m || out.matvecs >= cap;
    record(out, sub, z, rho, tol, false);
    if (want_vector && (done || out.error <= tol * std::abs(out.value))) out.vector = sub.expand(z.y);
    if (sub.low_active() && (!std::isfinite(out.value) || !std::isfinite(rho))) {
      // Out of single precision's range: start over in double.
      sub.discard_low();
      if (!sub.add(sub.expansion() = start)) {
        out.status = Status::numerical_failure;
        out.message = "the start vector is zero or not finite";
        return;
      }
      continue;
    }
    if (!std::isfinite(out.value) || !std::isfinite(rho)) {
      out.status = Status::numerical_failure;
      out.message = "the Ritz value or residual is not finite";
      return;
    }
    // Single-precision phase (theory/region.md, section 7): nothing is
    // certified from its images. It ends once the residual is near what
    // single precision resolves, stops improving, looks certified, or has
    // used half the budget; then the kept vectors are re-applied in double.
    if (sub.low_active()) {
      if (rho < 0.9 * best_low) {
        best_low = rho;
        since_best = 0;
      } else {
        ++since_best;
      }
      const int stall = rho <= 100 * kLowTarget * std::abs(out.value) ? kLowStall : 4 * kLowStall;
      if (rho <= kLowTarget * std::abs(out.value) || since_best >= stall || out.error <= tol * std::abs(out.value) ||
          sub.size() == m || out.matvecs >= cap / 2) {
        sub.promote(z.basis, std::min(sub.size(), kLowKeep));
        continue;
      }
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
    if (!sub.add_expansion() && !sub.add_residual()) {
      if (sub.low_active()) {  // nothing is certified from single-precision images
        sub.reapply_in_double();
        continue;
      }
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
std::vector<std::size_t> subspace_members(const VectorXd& p, const ApplyFn& counted, const ApplyFn& low,
                                          const VectorXd& start, const SolverOptions& opt, Index kmax,
                                          bool want_vectors, FamilyResult& res) {
  Subspace sub(p, counted, low, kmax);
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
  res.low_precision_matvecs = sub.low_applications();
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
                        bool want_vectors, const ApplyFn& low_precision) {
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
    res.subspace_dimension = family_subspace(m, opt, fixed_bytes, what, static_cast<Index>(s.size()));
    const ApplyFn counted_low = !low_precision ? ApplyFn() : ApplyFn([&](const double* x, double* y) {
      throw_if_interrupted("eigensolver");
      const auto t0 = std::chrono::steady_clock::now();
      low_precision(x, y);
      res.apply_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++applications;
    });
    pending = subspace_members(p, counted, counted_low, start, opt, res.subspace_dimension, want_vectors, res);
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
