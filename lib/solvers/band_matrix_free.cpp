// The certified band from Jacobian products only (include/sgdstab/band.hpp,
// theory/band.md, section 5): the upper side is the exact eta* of the model
// restricted to a parameter subspace, the lower side Wu, Ma & E's X = Pi
// bound with lambda_max(M) bounded from above by Lanczos.
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"
#include "sgdstab/stability.hpp"
#include "solvers/band_detail.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace band_matrix_free_detail {

// The model's products, counted and checked (a user's model may return
// anything).
class CheckedModel {
 public:
  explicit CheckedModel(const LinearizedModel& m) : m_(m), n_(m.samples()), c_(m.outputs()), p_(m.params()) {
    detail::require(n_ >= 1 && c_ >= 1 && p_ >= 1, "stability_band",
                    "the model's sizes must be >= 1, got n = " + std::to_string(n_) + ", C = " + std::to_string(c_) +
                        ", p = " + std::to_string(p_));
  }
  Index n() const { return n_; }
  Index c() const { return c_; }
  Index p() const { return p_; }
  Index nc() const { return n_ * c_; }
  Index products() const { return products_; }

  MatrixXd times(const MatrixXd& v) {  // J V
    MatrixXd out = m_.jacobian_times(v);
    detail::throw_if_interrupted("stability_band");  // a model's product may take long (Python, PyTorch)
    check(out, nc(), v.cols(), "jacobian_times");
    products_ += v.cols();
    return out;
  }
  MatrixXd transpose_times(const MatrixXd& u) {  // J^T U
    MatrixXd out = m_.jacobian_transpose_times(u);
    detail::throw_if_interrupted("stability_band");
    check(out, p_, u.cols(), "jacobian_transpose_times");
    products_ += u.cols();
    return out;
  }
  MatrixXd grams() {  // J_i J_i^T stacked
    MatrixXd out = m_.sample_grams();
    detail::throw_if_interrupted("stability_band");
    check(out, nc(), c_, "sample_grams");
    for (Index i = 0; i < n_; ++i) {
      const auto block = out.middleRows(i * c_, c_);
      if (!((block - block.transpose()).cwiseAbs().maxCoeff() <= 1e-8 * block.cwiseAbs().maxCoeff()))
        throw invalid_argument("stability_band: the model's sample_grams() block " + std::to_string(i) +
                               " is not symmetric");
    }
    return out;
  }

 private:
  void check(const MatrixXd& out, Index rows, Index cols, const char* what) const {
    detail::require(out.rows() == rows && out.cols() == cols, "stability_band",
                    std::string("the model's ") + what + "() returned " + std::to_string(out.rows()) + " x " +
                        std::to_string(out.cols()) + ", expected " + std::to_string(rows) + " x " + std::to_string(cols));
    detail::require(out.allFinite(), "stability_band", std::string("the model's ") + what + "() returned NaN or Inf");
  }
  const LinearizedModel& m_;
  Index n_, c_, p_;
  Index products_ = 0;
};

// Lanczos with full reorthogonalization on a symmetric PSD operator: the
// orthonormal basis Q (N x m), the images A Q, and the compression T = Q^T A Q.
struct LanczosBasis {
  MatrixXd q, aq, t;
  bool invariant = false;  // the Krylov space closed before m vectors
};

// The part of w orthogonal to the first k columns of q (Gram-Schmidt twice).
VectorXd orthogonal_part(const MatrixXd& q, Index k, VectorXd w) {
  for (int pass = 0; pass < 2; ++pass) w -= q.leftCols(k) * (q.leftCols(k).transpose() * w);
  return w;
}

LanczosBasis lanczos_basis(const std::function<VectorXd(const VectorXd&)>& apply, VectorXd start, Index m,
                           const char* where) {
  const Index dim = start.size();
  m = std::min(m, dim);
  LanczosBasis b;
  b.q.resize(dim, m);
  b.aq.resize(dim, m);
  double scale = 0.0;
  Index used = 0;
  start /= start.norm();
  for (Index j = 0; j < m; ++j) {
    detail::throw_if_interrupted(where);
    b.q.col(j) = start;
    b.aq.col(j) = apply(start);
    ++used;
    scale = std::max(scale, b.aq.col(j).norm());
    if (j + 1 == m) break;
    const VectorXd w = orthogonal_part(b.q, j + 1, b.aq.col(j));
    const double beta = w.norm();
    if (!(beta > 1e-12 * scale)) {  // invariant subspace: the Krylov space is exhausted
      b.invariant = true;
      break;
    }
    start = w / beta;
  }
  b.q.conservativeResize(dim, used);
  b.aq.conservativeResize(dim, used);
  b.t = b.q.transpose() * b.aq;
  b.t = 0.5 * (b.t + b.t.transpose()).eval();
  return b;
}

double top_eigenvalue(const MatrixXd& s) {
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(s, Eigen::EigenvaluesOnly);
  return es.eigenvalues()(s.rows() - 1);
}

// Upper bounds on lambda_max(A) from a Lanczos basis of a PSD A with trace
// tau (theory/band.md, eqs. 8 and 9).
struct TopBounds {
  double ritz = 0.0;           // theta = lambda_max(T): a lower estimate
  double certified = 0.0;      // >= lambda_max(A), always
  double probabilistic = 0.0;  // >= lambda_max(A) with probability >= 1 - delta; inf when none
};

// A sum over a Lanczos basis above the trace it is part of proves that the
// model's sample_grams() (the trace) and its products (the sum) disagree.
void refuse_if_above(double sum, double trace, double tolerance, const std::string& sum_name, const char* trace_name) {
  if (sum > (1.0 + tolerance) * trace)
    throw invalid_argument("stability_band: the model's sample_grams() disagree with its products (" + sum_name +
                           " = " + detail::fmt(sum) + " exceeds tr " + trace_name + " = " + detail::fmt(trace) +
                           " computed from the blocks J_i J_i^T)");
}

// `requested`: the Lanczos vectors asked for. After an exact invariant exit
// every larger Krylov space is the same, so the Ritz value is that of
// min(requested, N) vectors and eq. 9 may use it. `rest_top`: a second
// upper bound on lambda_max(C) known to the caller (eq. 8'), INFINITY if none.
TopBounds top_bounds(const LanczosBasis& b, double trace, double delta, Index requested, const char* name,
                     double rest_top = INFINITY) {
  TopBounds out;
  const Index m = b.t.rows(), dim = b.q.rows();
  out.ritz = top_eigenvalue(b.t);
  // Certified (eq. 8): A = [[T, R^T], [R, C]] in (Q, Q-perp); lambda_max(C) <= tr C = tau - tr T
  // (or rest_top, eq. 8', when smaller).
  const MatrixXd r = b.aq - b.q * b.t;
  const double rnorm = std::sqrt(std::max(0.0, top_eigenvalue(r.transpose() * r)));
  refuse_if_above(b.t.trace(), trace, 1e-8, "tr T", name);
  const double rest = m == dim ? 0.0 : std::min(std::max(0.0, trace - b.t.trace()), rest_top);
  out.certified = 0.5 * (out.ritz + rest + std::hypot(out.ritz - rest, 2.0 * rnorm));
  // Probabilistic (eq. 9, Kuczynski & Wozniakowski 1992, Lanczos from a
  // uniform start): k = m - 1 products beyond the start.
  out.probabilistic = INFINITY;
  const double k = static_cast<double>((b.invariant ? std::min(requested, dim) : m) - 1);
  if (delta > 0.0 && k >= 1.0) {
    const double root = std::log(1.648 * std::sqrt(static_cast<double>(dim)) / delta) / (2.0 * k - 1.0);
    const double eps = root * root;
    if (eps < 1.0) out.probabilistic = out.ritz / (1.0 - eps);
  }
  return out;
}

VectorXd random_unit(Index dim, Rng& rng) {
  VectorXd v(dim);
  for (Index i = 0; i < dim; ++i) v(i) = rng.normal();
  return v / v.norm();
}

// What every batch size shares: the parameter subspace of the upper side
// (as its compressed Jacobian J L) and the per-sample Grams.
struct SharedProducts {
  MatrixXd basis;       // L, p x m (orthonormal)
  MatrixXd compressed;  // J L, (n C) x m
  MatrixXd grams;       // J_i J_i^T stacked, (n C) x C
  double gram_trace = 0.0;    // tr K = sum_i tr(J_i J_i^T)
  double block_top = 0.0;     // max_i lambda_max(J_i J_i^T)
  double h_top = 0.0;         // certified: >= lambda_max(H) (eq. 8 on H's Lanczos basis)
  Index subspace_vectors = 0;  // columns of basis now (the first initial_vectors made before any doubling)
  Index initial_vectors = 0;   // the Krylov dimension every band starts from (min(subspace, p, n C) or less)
  // Continuing the Lanczos run for the doublings (theory/band.md, section 5.1):
  VectorXd next;               // the next unit vector, orthogonal to the basis; empty once the Krylov space closed
  double h_scale = 0.0;        // max_j |H q_j|: the scale of the closure test
  Index krylov_limit = 0;      // min(p, n C): no Krylov space of H is larger
};

SharedProducts share_products(CheckedModel& model, const BandOptions& o, Rng& rng) {
  const Index n = model.n(), c = model.c(), nc = model.nc(), p = model.p();
  const Index m = std::min({o.subspace, p, nc});
  check_memory(8.0 * (2.0 * static_cast<double>(p) + 2.0 * static_cast<double>(nc)) * static_cast<double>(m + o.noise_vectors) +
                   8.0 * 2.0 * static_cast<double>(nc) * static_cast<double>(std::min(o.lanczos_steps, nc)),
               "stability_band (Lanczos vectors)");
  SharedProducts s;
  s.compressed.resize(nc, m);
  Index kept = 0;
  // Lanczos on H = (1/n) J^T J from J^T u (in range(H)); J v of each vector kept.
  auto apply_h = [&](const VectorXd& v) -> VectorXd {
    const MatrixXd jv = model.times(v);
    s.compressed.col(kept++) = jv.col(0);
    return model.transpose_times(jv).col(0) / static_cast<double>(n);
  };
  const VectorXd start = model.transpose_times(random_unit(nc, rng)).col(0);
  detail::require(start.norm() > 0.0, "stability_band", "J^T u = 0 for a random u: the Jacobian is zero");
  const LanczosBasis h = lanczos_basis(apply_h, start, m, "stability_band");
  s.subspace_vectors = s.initial_vectors = h.q.cols();
  s.basis = h.q;
  s.krylov_limit = std::min(p, nc);
  for (Index j = 0; j < h.aq.cols(); ++j) s.h_scale = std::max(s.h_scale, h.aq.col(j).norm());
  if (!h.invariant && s.subspace_vectors < s.krylov_limit) {  // where a doubling would continue
    const VectorXd w = orthogonal_part(h.q, h.q.cols(), h.aq.col(h.aq.cols() - 1));
    if (w.norm() > 1e-12 * s.h_scale) s.next = w / w.norm();
  }
  // The kept J v are J L up to the basis: J Q exactly (column j was J q_j).
  s.compressed.conservativeResize(nc, s.subspace_vectors);
  s.grams = model.grams();
  for (Index i = 0; i < n; ++i) {
    const MatrixXd block = s.grams.middleRows(i * c, c);
    s.gram_trace += block.trace();
    s.block_top = std::max(s.block_top, top_eigenvalue(0.5 * (block + block.transpose())));
  }
  // tr H = tr K / n. (Eq. 8 only: the start J^T u is not uniform on a sphere.)
  s.h_top = top_bounds(h, s.gram_trace / static_cast<double>(n), 0.0, m, "H").certified;
  return s;
}

// Continues the Lanczos run of H until the basis has `target` columns (or the
// Krylov space closes), with J of each new column (theory/band.md, section
// 5.1: the doublings). The first columns are unchanged, so every band that
// uses the first m of them sees the subspace it would see alone. Returns
// false, leaving the basis as it was, when the grown basis would not fit in
// the available memory; `note` then says so.
bool extend_subspace(CheckedModel& model, SharedProducts& s, Index target, std::string& note) {
  target = std::min(target, s.krylov_limit);
  const Index have = s.basis.cols();
  if (target <= have || s.next.size() == 0) return true;
  const double bytes = 8.0 * static_cast<double>(model.p() + model.nc()) * static_cast<double>(target);
  const std::size_t available = available_memory_bytes();
  if (available != 0 && bytes > static_cast<double>(available)) {
    note = "; no doubling to " + std::to_string(target) + " Krylov vectors: it needs " + format_bytes(bytes) +
           " and " + format_bytes(static_cast<double>(available)) + " is available";
    return false;
  }
  s.basis.conservativeResize(Eigen::NoChange, target);
  s.compressed.conservativeResize(Eigen::NoChange, target);
  Index k = have;
  while (k < target && s.next.size() != 0) {
    s.basis.col(k) = s.next;
    const MatrixXd jv = model.times(s.next);
    s.compressed.col(k) = jv.col(0);
    const VectorXd hv = model.transpose_times(jv).col(0) / static_cast<double>(model.n());
    s.h_scale = std::max(s.h_scale, hv.norm());
    ++k;
    const VectorXd w = orthogonal_part(s.basis, k, hv);
    if (k == s.krylov_limit || !(w.norm() > 1e-12 * s.h_scale))
      s.next.resize(0);  // the Krylov space closed
    else
      s.next = w / w.norm();
  }
  if (k < target) {
    s.basis.conservativeResize(Eigen::NoChange, k);
    s.compressed.conservativeResize(Eigen::NoChange, k);
  }
  s.subspace_vectors = k;
  return true;
}

// ---- Momentum's lower side (theory/band.md, section 6) ----
// Polynomials in s = eta * lambda, coefficients ascending, degree <= 4.
using Poly = std::array<double, 5>;

Poly operator+(Poly a, const Poly& b) {
  for (std::size_t k = 0; k < a.size(); ++k) a[k] += b[k];
  return a;
}
Poly operator*(double x, Poly a) {
  for (double& v : a) v *= x;
  return a;
}
Poly operator*(const Poly& a, const Poly& b) {
  Poly out{};
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; i + j < out.size(); ++j) out[i + j] += a[i] * b[j];
  return out;
}
double at(const Poly& a, double s) {
  double v = 0.0;
  for (std::size_t k = a.size(); k-- > 0;) v = v * s + a[k];
  return v;
}

// Bernstein coefficients b (degree 4, on [0, 1]) all <= 0 proves the
// polynomial <= 0 there; otherwise split at 1/2 (de Casteljau) while the
// budget of pieces lasts. False: a positive value found, or undecided.
bool bernstein_nonpositive(const Poly& b, int& budget) {
  if (b.front() > 0.0 || b.back() > 0.0) return false;
  if (*std::max_element(b.begin(), b.end()) <= 0.0) return true;
  if (--budget <= 0) return false;
  Poly left{}, right{}, w = b;
  for (std::size_t r = 0; r < w.size(); ++r) {
    left[r] = w[0];
    right[w.size() - 1 - r] = w[w.size() - 1 - r];
    for (std::size_t k = 0; k + 1 < w.size() - r; ++k) w[k] = 0.5 * (w[k] + w[k + 1]);
  }
  return bernstein_nonpositive(left, budget) && bernstein_nonpositive(right, budget);
}

// p(s) <= 0 for every s in [0, top]?
bool nonpositive_on(const Poly& p, double top) {
  Poly q = p, b{};
  double power = 1.0;
  for (double& v : q) {
    v *= power;
    power *= top;
  }
  const double binom[5][5] = {{1, 0, 0, 0, 0}, {1, 1, 0, 0, 0}, {1, 2, 1, 0, 0}, {1, 3, 3, 1, 0}, {1, 4, 6, 4, 1}};
  for (int j = 0; j <= 4; ++j)
    for (int k = 0; k <= j; ++k) b[j] += binom[j][k] / binom[4][k] * q[k];
  int budget = 4096;
  return bernstein_nonpositive(b, budget);
}

// The largest eta (by bisection) at which every mode lambda in (0, top]
// passes eq. 13: with s = eta lambda, A_s = [[1 - c s, -g], [s, beta]] stable
// and eta^2 lambda (a0 + a1 lambda) [sum_k A_s^k e e^T A_s^kT]_11 <= 1, where
// Q <= a0 H + (a1 + 1) H^2 on range(H) (eq. 12). The feasible etas form an
// interval from 0 (section 6), so the bisection's good end certifies it.
double momentum_modes_low(double beta, bool nesterov, double a0, double a1, double top) {
  const double g = nesterov ? beta * beta : beta, c = nesterov ? 1.0 + beta : 1.0;
  const Poly one{1.0}, t{1.0 + beta, -c}, d{beta, g - c * beta}, x1{-c - g, c * c};
  const double x0 = -c, k = c * (1.0 - beta) + g;
  // s * [sum_k ...]_11 = N(s) / (k (1 - d)(1 + d + t)) (eq. 14); N of degree 3.
  const Poly n = (one + d) * (x0 * x0 * one + x1 * x1 + (-x0 * x0) * (t * t)) +
                 (-2.0) * (t * d) * (x0 * x1 + (-x0 * x0) * t);
  const Poly bound = k * ((one + (-1.0) * d) * (one + d + t));
  auto good = [&](double eta) {
    const double smax = eta * top;
    const double dv = at(d, smax), tv = at(t, smax);
    if (!(1.0 - dv > 0.0 && 1.0 + dv > 0.0 && 1.0 + dv + tv > 0.0)) return false;  // Jury; 1 - t + d = k s > 0
    const Poly p = Poly{eta * a0, a1} * n + (-1.0) * bound;
    return nonpositive_on(p, smax);
  };
  double lo = 0.0, hi = detail::mean_limit(Momentum{beta, nesterov}, top);
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    (good(mid) ? lo : hi) = mid;
  }
  return lo;
}

// ---- Momentum's upper side (theory/band.md, section 6, eqs. 15-16) ----
// In the restricted model's reduced coordinates (H_L = diag(d), factor Z):
// eta is unstable when some symmetric Y and rho0 in (0, 1) give
//   eta^2 (1 - rho0^2) w^2 <Y, C Y> >= a^2 |Y|^2 + 2 a b eta tr(Y^2 H) + b^2 eta^2 tr(Y H Y H),
// a = (1 - rho0)(1 - rho0 beta), b = rho0 w, w = c (1 - rho0 beta) + rho0 g,
// C(Y) = (alpha - 1) H Y H + beta_s (1/n) sum_i h_i Y h_i (eq. 16). Returns
// the least such eta over the Y tried (INFINITY when none), Y from power
// iteration of K_eta = G_eta o C (momentum.md eq. 8) at the current estimate.
class MomentumUpper {
 public:
  MomentumUpper(const Geometry& g, SamplingFactors f, double beta, bool nesterov)
      : d_(g.hessian_eigenvalues()), z_(g.factor()), n_(g.samples()), c_(g.outputs()), f_(f), beta_(beta),
        g_(nesterov ? beta * beta : beta), cc_(nesterov ? 1.0 + beta : 1.0) {}

  double eta_high(double eta_mean) {
    const Index r = d_.size();
    MatrixXd y = MatrixXd::Identity(r, r);
    double best = INFINITY, eta = 0.5 * eta_mean;
    for (int outer = 0; outer < 4; ++outer) {
      const MatrixXd gm = kernel(eta);
      for (int it = 0; it < 30; ++it) {
        detail::throw_if_interrupted("stability_band");
        const MatrixXd cy = apply_c(y);
        best = std::min(best, root(y, cy));
        y = gm.cwiseProduct(cy);  // K_eta(Y): a positive map, its Perron matrix by power iteration
        y = 0.5 * (y + y.transpose()).eval();
        const double norm = y.norm();
        if (!(norm > 0.0) || !std::isfinite(norm)) return best;
        y /= norm;
      }
      if (!std::isfinite(best)) return best;
      eta = std::min(best, eta_mean) * (1.0 - 1e-3);  // the next kernel just below the best certificate
    }
    return best;
  }

 private:
  // G_eta(i, j) = eta^2 [S_ij]_11, S_ij - m_i S_ij m_j^T = e e^T (momentum.md eq. 8);
  // 0 where a 2 x 2 mean block is not stable (eta at or above its limit).
  MatrixXd kernel(double eta) const {
    const Index r = d_.size();
    MatrixXd out(r, r);
    const Eigen::Vector2d e(-cc_, 1.0);
    Eigen::Matrix4d k;
    const Eigen::Vector4d rhs(e(0) * e(0), e(1) * e(0), e(0) * e(1), e(1) * e(1));  // vec(e e^T), column-major
    for (Index i = 0; i < r; ++i)
      for (Index j = 0; j <= i; ++j) {
        Eigen::Matrix2d mi, mj;
        mi << 1.0 - cc_ * eta * d_(i), -g_, eta * d_(i), beta_;
        mj << 1.0 - cc_ * eta * d_(j), -g_, eta * d_(j), beta_;
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b)
            for (int p = 0; p < 2; ++p)
              for (int q = 0; q < 2; ++q)
                k(a + 2 * b, p + 2 * q) = (a == p && b == q ? 1.0 : 0.0) - mi(a, p) * mj(b, q);
        const Eigen::Vector4d sv = k.fullPivLu().solve(rhs);
        const double v = eta * eta * sv(0);
        out(i, j) = out(j, i) = std::isfinite(v) && v > 0.0 ? v : 0.0;
      }
    return out;
  }

  MatrixXd apply_c(const MatrixXd& y) const {
    MatrixXd out = (f_.alpha - 1.0) * d_.asDiagonal() * y * d_.asDiagonal();
    if (f_.beta != 0.0) {
      MatrixXd acc = MatrixXd::Zero(y.rows(), y.cols());
      for (Index i = 0; i < n_; ++i) {
        const auto zi = z_.middleRows(i * c_, c_);
        const MatrixXd zy = zi * y;  // C x r
        acc.noalias() += zi.transpose() * (zy * zi.transpose()) * zi;
      }
      out += (f_.beta / static_cast<double>(n_)) * acc;
    }
    return out;
  }

  // The least eta passing eq. 16 for this Y over a grid of rho0.
  double root(const MatrixXd& y, const MatrixXd& cy) const {
    const double cyy = (y.array() * cy.array()).sum();
    if (!(cyy > 0.0)) return INFINITY;
    const MatrixXd yd = y * d_.asDiagonal();
    const double yy = y.squaredNorm(), y2h = (y.array() * yd.array()).sum();
    const double yhyh = (yd.array() * yd.transpose().array()).sum();
    double best = INFINITY;
    for (int k = 1; k < 200; ++k) {
      const double rho0 = k < 100 ? k / 100.0 : 1.0 - std::pow(10.0, -2.0 - 4.0 * (k - 100) / 99.0);
      const double w = cc_ * (1.0 - rho0 * beta_) + rho0 * g_, a = (1.0 - rho0) * (1.0 - rho0 * beta_), b = rho0 * w;
      const double q2 = (1.0 - rho0 * rho0) * w * w * cyy - b * b * yhyh, q1 = -2.0 * a * b * y2h, q0 = -a * a * yy;
      if (!(q2 > 0.0)) continue;
      // The larger root of q2 eta^2 + q1 eta + q0 (q0 <= 0 < q2: one positive root); eq. 16 holds beyond it.
      const double disc = q1 * q1 - 4.0 * q2 * q0;
      const double eta = (-q1 + std::sqrt(std::max(0.0, disc))) / (2.0 * q2);
      best = std::min(best, eta * (1.0 + 1e-12));
    }
    return best;
  }

  Eigen::VectorXd d_;
  MatrixXd z_;
  Index n_, c_;
  SamplingFactors f_;
  double beta_, g_, cc_;
};

// eta_low with momentum from mu >= lambda_max(H^{-1/2} Q H^{-1/2}) (M's
// bound), the scheme's factors, nu = max_i lambda_max(K_ii) and top >=
// lambda_max(H): the best over the blends Q <= tau mu H + (1 - tau)(alpha
// H^2 + beta_s nu H) (eq. 12).
double momentum_low(const BandOptions& o, SamplingFactors f, double mu, double nu, double top) {
  top = std::min(top, mu);  // lambda_max(H) <= mu since Q >= H^2
  if (!(top > 0.0)) return 0.0;
  double best = 0.0;
  for (int i = 0; i <= 10; ++i) {
    const double tau = i / 10.0;
    if (tau > 0.0 && !std::isfinite(mu)) break;  // only tau = 0 does without mu
    best = std::max(best, momentum_modes_low(o.momentum, o.nesterov, tau * mu + (1.0 - tau) * f.beta * nu,
                                             (1.0 - tau) * f.alpha - 1.0, top));
  }
  return best;
}

// The lower side at one batch size (theory/band.md, eqs. 6-9):
// eta_low = 2 / lambda_max(M), M = (alpha / n) K + beta blockdiag(K_ii).
// Returns M's top Ritz vectors (up to o.noise_vectors of them, in R^{nC}).
MatrixXd lower_side(CheckedModel& model, const SharedProducts& s, SamplingFactors f, const BandOptions& o, Rng& rng,
                    BandResult& res, Index& lanczos_vectors) {
  const Index n = model.n(), c = model.c();
  const double a = f.alpha / static_cast<double>(n), b = f.beta;
  double kept_k_trace = 0.0;  // tr(Q^T K Q): apply_m is called once on each Lanczos vector
  auto apply_m = [&](const VectorXd& v) -> VectorXd {
    VectorXd out = VectorXd::Zero(v.size());
    if (b != 0.0)
      for (Index i = 0; i < n; ++i)
        out.segment(i * c, c).noalias() = b * s.grams.middleRows(i * c, c) * v.segment(i * c, c);
    if (a != 0.0) {  // no products when alpha = 0
      const VectorXd kv = model.times(model.transpose_times(v)).col(0);
      kept_k_trace += v.dot(kv);
      out += a * kv;
    }
    return out;
  };
  const LanczosBasis l = lanczos_basis(apply_m, random_unit(model.nc(), rng), o.lanczos_steps, "stability_band");
  lanczos_vectors += l.q.cols();
  // Undiluted by b D, unlike tr T against tr M, so float32 products (about
  // 1e-7) get room here; the tr T check in top_bounds keeps 1e-8 (at b = 0
  // it tests the same sum). A larger excess is a model whose passes differ.
  refuse_if_above(kept_k_trace, s.gram_trace, 1e-5, "tr Q^T K Q", "K");
  // Eq. 8': in (Q, Q-perp) the lower-right block is a Q-perp^T K Q-perp + b
  // Q-perp^T D Q-perp, whose lambda_max is at most a (tr K - tr Q^T K Q) +
  // b max_i lambda_max(K_ii). Weyl's bound on M itself is a n lambda_max(H)
  // + b max_i lambda_max(K_ii) (a n lambda_max(H) in place of the trace
  // term above would add nothing: eq. 8 is >= its t).
  const double k_rest = std::max(0.0, s.gram_trace - kept_k_trace);
  const TopBounds t = top_bounds(l, (a + b) * s.gram_trace, o.delta, o.lanczos_steps, "M", a * k_rest + b * s.block_top);
  const double weyl = f.alpha * s.h_top + b * s.block_top;
  // alpha = 0: M is block diagonal and its lambda_max is known exactly.
  const double certified = a == 0.0 ? b * s.block_top : std::min(t.certified, weyl);
  const double probabilistic = a == 0.0 ? INFINITY : t.probabilistic;
  if (o.momentum > 0.0) {  // theory/band.md, section 6
    res.eta_low_certified = momentum_low(o, f, certified, s.block_top, s.h_top);
    res.eta_low = res.eta_low_certified;
    res.low_witness = "momentum-modes";
    const double chance = std::isfinite(probabilistic) ? momentum_low(o, f, probabilistic, s.block_top, s.h_top) : 0.0;
    if (chance > res.eta_low_certified) {
      res.eta_low = chance;
      res.eta_low_kind = "probabilistic";
      res.delta = o.delta;
    }
  } else {
    res.eta_low_certified = certified > 0.0 ? 2.0 / certified : INFINITY;
    res.eta_low = res.eta_low_certified;
    res.low_witness = "Pi";
    if (probabilistic < certified) {
      res.eta_low = 2.0 / probabilistic;
      res.eta_low_kind = "probabilistic";
      res.delta = o.delta;
    }
  }
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(l.t);
  const Index k = std::min<Index>(o.noise_vectors, l.t.rows());
  return l.q * es.eigenvectors().rightCols(k);
}

// The subspace for one batch size: the first `krylov` columns of L plus the
// noise directions Z = J^T U for M's top Ritz vectors U (the directions of
// the largest gradient noise; theory/band.md, section 5.1), orthonormalized
// against them; returns J of the whole basis.
MatrixXd enriched_jacobian(CheckedModel& model, const SharedProducts& s, Index krylov, const MatrixXd& z,
                           Index& dimension) {
  dimension = krylov;
  const auto basis = s.basis.leftCols(krylov);
  if (z.cols() == 0) return s.compressed.leftCols(krylov);
  // Gram-Schmidt (twice) against L and the columns kept so far; a column
  // that loses all but 1e-6 of its norm is in the span already and is
  // dropped, so the basis stays orthonormal to ~1e-10 (eq. 5 needs it).
  MatrixXd e(z.rows(), z.cols());
  Index extra = 0;
  for (Index j = 0; j < z.cols(); ++j) {
    VectorXd w = z.col(j);
    const double before = w.norm();
    for (int pass = 0; pass < 2; ++pass) {
      w -= basis * (basis.transpose() * w);
      w -= e.leftCols(extra) * (e.leftCols(extra).transpose() * w);
    }
    if (!(w.norm() > 1e-6 * before)) continue;
    e.col(extra++) = w / w.norm();
  }
  if (extra == 0) return s.compressed.leftCols(krylov);
  e.conservativeResize(Eigen::NoChange, extra);
  MatrixXd out(s.compressed.rows(), krylov + extra);
  out << s.compressed.leftCols(krylov), model.times(e);
  dimension += extra;
  return out;
}

// The report's message up to the upper side: the width against the
// tolerance and the kind of the lower side.
std::string width_and_lower_side(const BandResult& res, const BandOptions& o) {
  return "band of relative width " + detail::fmt(res.relative_width) +
         (res.relative_width <= o.tolerance ? " (within the tolerance)"
                                            : " (wider than the tolerance " + detail::fmt(o.tolerance) + ")") +
         ", lower side " + res.eta_low_kind +
         (res.eta_low_kind == "probabilistic" ? " (failure probability " + detail::fmt(res.delta) + ")" : "");
}

}  // namespace band_matrix_free_detail

std::vector<std::vector<BandResult>> stability_band_region(const LinearizedModel& model,
                                                           const std::vector<Sampling>& schemes,
                                                           const std::vector<Index>& batches, const BandOptions& o) {
  return detail::band_region_known_top(model, schemes, batches, o, 0.0);
}

std::vector<std::vector<BandResult>> detail::band_region_known_top(const LinearizedModel& model,
                                                                   const std::vector<Sampling>& schemes,
                                                                   const std::vector<Index>& batches,
                                                                   const BandOptions& o, double lambda_max) {
  using namespace band_matrix_free_detail;
  const detail::Stopwatch watch;
  o.validate();
  CheckedModel checked(model);
  detail::require(!schemes.empty(), "stability_band_region", "no sampling schemes given");
  for (std::size_t k = 0; k < schemes.size(); ++k)
    for (std::size_t l = 0; l < k; ++l)
      detail::require(schemes[k] != schemes[l], "stability_band_region",
                      "sampling scheme '" + to_string(schemes[k]) + "' given twice");
  detail::require(!batches.empty(), schemes.size() > 1 ? "stability_band_region" : "stability_bands",
                  "no batch sizes given");
  for (Index b : batches) check_batch(b, checked.n(), "stability_band");
  Rng shared_rng(o.seed);
  SharedProducts s = share_products(checked, o, shared_rng);
  if (lambda_max > 0.0) s.h_top = lambda_max * (1.0 + 1e-12);  // known exactly (a Geometry's): no Lanczos bound
  Index lanczos_vectors = s.subspace_vectors;
  std::vector<std::vector<BandResult>> all;
  for (const Sampling sampling : schemes) {
    // Every scheme continues the stream where the shared products left it,
    // so its bands are those stability_bands gives for it alone.
    Rng rng = shared_rng;
    std::vector<BandResult> out;
    for (const Index batch : batches) {
      BandResult res;
      res.batch = batch;
      res.sampling = sampling;
      const MatrixXd noise =
          lower_side(checked, s, sampling_factors(sampling, checked.n(), batch), o, rng, res, lanczos_vectors);
      const MatrixXd z = noise.cols() == 0 ? MatrixXd(checked.p(), 0) : checked.transpose_times(noise);
      // The upper side on the first `krylov` Krylov vectors plus the noise directions.
      struct Upper {
        double eta_high = INFINITY;
        Index dimension = 0;
        Status status = Status::converged;
        bool from_noise = false;  // momentum: the noise certificate beat the full-batch limit
        std::string note;         // the restricted threshold's message when it did not converge
      };
      auto upper_at = [&](Index krylov) {
        Upper u;
        const Geometry restricted =
            Geometry::from_jacobian(enriched_jacobian(checked, s, krylov, z, u.dimension), checked.c());
        if (o.momentum > 0.0) {
          // The full-batch limit with lambda_max(L^T H L) <= lambda_max(H), or
          // below it the noise certificate on the subspace (theory/band.md,
          // section 6).
          const double mean_limit =
              detail::mean_limit(Momentum{o.momentum, o.nesterov}, std::max(restricted.lambda_max(), lambda_max));
          MomentumUpper upper(restricted, sampling_factors(sampling, checked.n(), batch), o.momentum, o.nesterov);
          u.eta_high = std::min(mean_limit, upper.eta_high(mean_limit));
          u.from_noise = u.eta_high < mean_limit;
        } else {
          const ThresholdResult high = stability_threshold(restricted, batch, sampling);
          u.eta_high = high.eta_star;
          u.status = high.status();
          if (!high.converged()) u.note = high.report.message;
        }
        return u;
      };
      // Upper side: the exact eta* of the model restricted to the subspace
      // (momentum: the certificates above), doubling the Krylov part while
      // the band is wide and each doubling closes a tenth of the gap
      // (theory/band.md, section 5.1). The subspaces are nested, so every
      // value is a certified upper side and the least is kept.
      Index krylov = s.initial_vectors, doublings = 0;
      Upper best = upper_at(krylov);
      Index best_krylov = krylov;
      std::string growth;
      while (doublings < o.subspace_doublings && best.status == Status::converged &&
             best.eta_high - res.eta_low > o.tolerance * best.eta_high) {
        if (!extend_subspace(checked, s, 2 * krylov, growth) || s.subspace_vectors <= krylov) break;
        const Index grown = std::min(2 * krylov, s.subspace_vectors);
        Upper u;
        try {
          u = upper_at(grown);
        } catch (const resource_error& e) {  // the restricted threshold would not fit: keep the smaller subspace
          u.status = Status::numerical_failure;
          u.note = e.what();
        }
        ++doublings;
        if (u.status != Status::converged) {
          growth = "; the doubling to " + std::to_string(grown) + " Krylov vectors is not used: its restricted " +
                   (u.status == Status::numerical_failure && u.note.find("memory") != std::string::npos
                        ? "threshold would not fit in memory ("
                        : "threshold did not converge (") +
                   u.note + ")";
          break;
        }
        const double gap = best.eta_high - res.eta_low, gain = best.eta_high - u.eta_high;
        krylov = grown;
        if (u.eta_high < best.eta_high) {
          best = u;
          best_krylov = krylov;
        }
        if (!(gain >= 0.1 * gap)) break;
      }
      res.eta_high = best.eta_high;
      res.subspace_dimension = best.dimension;
      res.subspace_doublings = doublings;
      const std::string subspace =
          " a parameter subspace of dimension " + std::to_string(best.dimension) +
          (doublings > 0 ? " (" + std::to_string(doublings) + (doublings == 1 ? " doubling" : " doublings") +
                               " of its Krylov part from " + std::to_string(s.initial_vectors) +
                               (best_krylov < krylov ? "; the one to " + std::to_string(krylov) +
                                                           " Krylov vectors did not lower eta_high"
                                                     : std::string()) +
                               ")"
                         : std::string()) +
          growth;
      if (o.momentum > 0.0) {
        for (double* low : {&res.eta_low, &res.eta_low_certified})  // equal up to rounding at B = n
          if (*low > res.eta_high && *low <= res.eta_high * (1.0 + 1e-9)) *low = res.eta_high;
        res.relative_width = (res.eta_high - res.eta_low) / res.eta_high;
        res.report.status = Status::converged;
        res.report.message = width_and_lower_side(res, o) + " from the momentum mode bound, upper side " +
                             (best.from_noise ? "from the gradient noise on" : "the full-batch limit, lambda_max(H) from") +
                             subspace;
        out.push_back(std::move(res));
        continue;
      }
      res.trial_dimension = best.dimension * (best.dimension + 1) / 2;
      res.relative_width = (res.eta_high - res.eta_low) / res.eta_high;
      res.report.status = best.status;
      res.report.message =
          (best.status == Status::converged ? std::string() : "the restricted threshold did not converge: " + best.note + "; ") +
          width_and_lower_side(res, o) + ", upper side from" + subspace;
      out.push_back(std::move(res));
    }
    all.push_back(std::move(out));
  }
  for (std::vector<BandResult>& out : all)
    for (BandResult& r : out) {  // the shared work, reported on every result
      r.products = checked.products();
      r.report.matvecs = checked.products();
      r.report.iterations = lanczos_vectors + (s.subspace_vectors - s.initial_vectors);  // with the doublings'
      r.report.seconds = watch.seconds();
    }
  return all;
}

std::vector<BandResult> stability_bands(const LinearizedModel& model, const std::vector<Index>& batches,
                                        Sampling sampling, const BandOptions& o) {
  return stability_band_region(model, {sampling}, batches, o).front();
}

BandResult stability_band(const LinearizedModel& model, Index batch, Sampling sampling, const BandOptions& o) {
  return stability_bands(model, {batch}, sampling, o).front();
}

}  // namespace sgdstab
