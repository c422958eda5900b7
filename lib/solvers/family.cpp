// One shared subspace for lambda_max((1 - s) diag(p) + s R), many s:
// theory/region.md, sections 3-5.
#include "solvers/family.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <type_traits>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "foundations/parallel.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "solvers/eigensolve.hpp"

namespace sgdstab::detail {

using Eigen::MatrixXd;
using Eigen::VectorXd;

double family_bytes(Index m, Index k) {
  // V and W (m x k each) and the candidate; what the single-precision phase
  // carries over (its float subspace, half this size, is freed before the
  // double one is allocated): kLowKeep double vectors for one member, at most
  // min(16, K/2) float vectors, one converted vector and the copy of the
  // start for several (the peak: while Q enters the double subspace); later,
  // one expanded Ritz vector: an upper bound with 11 vectors of length m
  // beside V and W.
  return 8.0 * (2.0 * static_cast<double>(k) + 11.0) * static_cast<double>(m);
}

Index family_min_subspace(Index m, const SolverOptions& opt) {
  return opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, 4);
}

Index family_subspace(Index m, const SolverOptions& opt, double fixed_bytes, const std::string& what, Index members) {
  // One member: 16 (each step reads the whole subspace twice or more, and at
  // nC = 4096 16 vectors cost one application more than 64 and save a third
  // of the solver's own time); several: 64, so later members find more of
  // what they need in it (theory/region.md, section 5).
  const Index automatic = members > 1 ? 64 : 16;
  Index k = opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, automatic);
  const Index floor_k = family_min_subspace(m, opt);
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

constexpr Index kMinGapSubspace = 4;

// lambda_max - theta <= rho^2 / (theta - theta_2 - rho) when that gap is
// wider than rho (Kato-Temple with the second Ritz value standing in for the
// rest of the spectrum), else rho (theory/region.md, section 4). The gap
// estimate is only trusted once it certifies the tolerance: before that the
// Ritz gap can be far wider than the true one, and the bound is rho.
double error_bound(double rho, const Ritz& z, double tol, Index size) {
  const double gap = z.theta - z.second - rho;
  // Not from fewer than kMinGapSubspace vectors: with K = 3 (a thick restart
  // keeps one vector) the second Ritz value is no estimate of the gap, and
  // certificates were measured wrong (tests/test_region.cpp).
  if (size >= kMinGapSubspace && std::isfinite(gap) && gap > rho) {
    const double refined = rho * rho / gap;
    if (refined <= tol * std::abs(z.theta)) return std::min(rho, refined);
  }
  return rho;
}

// Large buffers: ask for transparent huge pages before the first touch
// (fewer page faults while V and W fill; a hint, ignored where unsupported).
void advise_huge_pages(void* data, std::size_t bytes) {
#ifdef __linux__
  const std::uintptr_t huge = std::uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t end = begin + bytes;
  const std::uintptr_t lo = (begin + huge - 1) & ~(huge - 1), hi = end & ~(huge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

using RowsView = Eigen::Map<const MatrixXd, 0, Eigen::OuterStride<>>;

// y = alpha op(a) x + beta y on a block (BLAS dgemv: its AVX kernels, where
// Eigen's product would run on SSE2 in a portable build; measured 3x slower at k = 64).
void block_gemv(bool transpose, const RowsView& a, double alpha, const double* x, double beta, double* y) {
  gemv(transpose, a.rows(), a.cols(), alpha, a.data(), a.outerStride(), x, beta, y);
}

// to[0..n) = from[0..n) as doubles (a plain loop: GCC vectorizes the
// conversion, where Eigen's cast was not vectorized).
template <class S>
void to_double(const S* from, Index n, double* to) {
  for (Index j = 0; j < n; ++j) to[j] = static_cast<double>(from[j]);
}

// Rows [row, row + nb) of the first `cols` columns of a, as doubles: a view
// of double storage, a converted copy (in buf) of float storage.
template <class S>
RowsView rows_as_double(const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>& a, Index row, Index nb, Index cols,
                        MatrixXd& buf) {
  if constexpr (std::is_same_v<S, double>) {
    return RowsView(a.data() + row, nb, cols, Eigen::OuterStride<>(a.rows()));
  } else {
    for (Index i = 0; i < cols; ++i) to_double(a.data() + i * a.rows() + row, nb, buf.data() + i * buf.rows());
    return RowsView(buf.data(), nb, cols, Eigen::OuterStride<>(buf.rows()));
  }
}

// The shared subspace: V and W = R V, stored in S, with G_P = V'PV and
// G_R = V'W in double. Every pass over the stored vectors runs in row blocks
// that stay in cache while several products use them, on all cores,
// accumulating in double (float storage: each block's products in single
// precision, at most kFloatBlock rows; theory/region.md, sections 5 and 7).
//
// Double storage: V orthonormal. Per step one pass over V and W (the
// residual, the candidate t, V't and W't) and one over V (Gram-Schmidt and
// the column of G_P); the column of G_R is (W't - G_R V't) / |t - V V't|
// (R symmetric), unless more than 90 % of t's norm cancels: then one more
// pass over V gives it as V'(R v).
//
// Float storage (the single-precision phase, theory/region.md section 7):
// the candidate is stored as it comes, not orthogonalized, and the Gram
// matrix G = V'V is kept instead; Rayleigh-Ritz is the pencil (H, G). The
// pass that computes the candidate also gives its columns of G, G_P and G_R
// (V't, V'(p o t), W't: R symmetric), so a step reads V and W once. A
// candidate that cancels more than 99 % against span(V) is orthogonalized
// explicitly; a thick restart to G-orthonormal Ritz vectors makes V
// orthonormal again.
template <class S>
class Subspace {
 public:
  using Store = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  using Apply = std::function<void(const S* x, S* y)>;
  static constexpr bool kGram = std::is_same_v<S, float>;

  Subspace(const VectorXd& p, const Apply& apply, Index kmax)
      : p_(p), apply_(apply), m_(p.size()), kmax_(kmax), v_(m_, kGram ? kmax + 1 : kmax), w_(m_, kmax),
        gp_(kmax, kmax), gr_(kmax, kmax), g_(MatrixXd::Identity(kmax, kmax)), t_(kGram ? 0 : m_), c_(kmax),
        q_(kmax), u_(kmax) {
    advise_huge_pages(v_.data(), sizeof(S) * static_cast<std::size_t>(v_.size()));
    advise_huge_pages(w_.data(), sizeof(S) * static_cast<std::size_t>(w_.size()));
  }

  Index dimension() const { return m_; }
  Index size() const { return k_; }
  Index capacity() const { return kmax_; }
  Index applications() const { return applications_; }

  // Appends the part of x outside span(V) and its image R x. Returns false
  // when x lies in span(V) to rounding, or is zero or not finite.
  bool add(const VectorXd& x) {
    if (k_ == kmax_) return false;
    cand_ = kGram ? k_ : 0;
    S* t = candidate();
    const double* xs = x.data();
    parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
      for (Index j = lo; j < hi; ++j) t[j] = static_cast<S>(xs[j]);
    });
    project();
    return add_candidate();
  }

  // r = M(s) V y - theta V y for the Ritz pair z, and in the same pass the
  // next candidate t (davidson: r / (theta - (1 - s) p), denominators kept
  // >= 1e-3 theta in magnitude, theory/region.md section 5, at s = 1 it is
  // r / theta: Lanczos; else r itself) with its projections. Returns |r|.
  double residual(double s, const Ritz& z, bool davidson) {
    const Index k = k_;
    cand_ = kGram ? k : 0;
    const double theta = z.theta, free = 1.0 - s;
    const double floor = std::max(1e-3 * std::abs(theta), std::numeric_limits<double>::min());
    const VectorXd& y = z.y;
    S* const cand = candidate();
    const Index width = kGram ? 3 * k + 3 : 2 * k + 2;
    const Index nbmax = block_rows(k);
    if constexpr (kGram) {
      // Float storage: the block products in single precision (BLAS sgemv on
      // the stored blocks, no conversion), each block's sums added in double.
      const Eigen::VectorXf yf = y.cast<float>();
      const Index nbf = std::min<Index>(nbmax, kFloatBlock);
      const std::vector<double> acc = parallel_sums(m_, kChunk, width, [&](Index lo, Index hi, double* a) {
        Eigen::VectorXf vy(nbf), wy(nbf), tb(nbf), pt(nbf), part(3 * k);
        double rr = 0.0, tt = 0.0, tpt = 0.0;
        for (Index b0 = lo; b0 < hi; b0 += nbf) {
          const Index nb = std::min(nbf, hi - b0);
          const float* vb = v_.data() + b0;
          const float* wb = w_.data() + b0;
          gemv(false, nb, k, 1.0F, vb, m_, yf.data(), 0.0F, vy.data());
          gemv(false, nb, k, 1.0F, wb, m_, yf.data(), 0.0F, wy.data());
          const double* p = p_.data() + b0;
          S* t = cand + b0;
          for (Index j = 0; j < nb; ++j) {
            const double fp = free * p[j];
            const double rj = s * static_cast<double>(wy(j)) + (fp - theta) * static_cast<double>(vy(j));
            rr += rj * rj;
            double tj = rj;
            if (davidson) {
              double den = theta - fp;
              if (std::abs(den) < floor) den = den < 0 ? -floor : floor;
              tj = rj / den;
            }
            t[j] = static_cast<S>(tj);
            tb(j) = t[j];
            const double td = static_cast<double>(t[j]);
            tt += td * td;
            tpt += p[j] * td * td;
            pt(j) = static_cast<float>(p[j] * td);
          }
          gemv(true, nb, k, 1.0F, vb, m_, tb.data(), 0.0F, part.data());
          gemv(true, nb, k, 1.0F, vb, m_, pt.data(), 0.0F, part.data() + k);
          gemv(true, nb, k, 1.0F, wb, m_, tb.data(), 0.0F, part.data() + 2 * k);
          for (Index i = 0; i < 3 * k; ++i) a[i] += static_cast<double>(part(i));
        }
        a[width - 3] += tpt;
        a[width - 2] += rr;
        a[width - 1] += tt;
      });
      take_projections(acc, k);
      return std::sqrt(acc[static_cast<std::size_t>(width) - 2]);
    } else {
      // Double storage: [V't, W't, u'u, u'(p o u), u'Ru, |r|^2, |t|^2] with u = V y.
      const Index dwidth = width + 3;
      const std::vector<double> acc = parallel_sums(m_, kChunk, dwidth, [&](Index lo, Index hi, double* a) {
        VectorXd vy(nbmax), wy(nbmax), tb(nbmax);
        double rr = 0.0, tt = 0.0, uu = 0.0, upu = 0.0, uru = 0.0;
        for (Index b0 = lo; b0 < hi; b0 += nbmax) {
          const Index nb = std::min(nbmax, hi - b0);
          const RowsView vb(v_.data() + b0, nb, k, Eigen::OuterStride<>(m_));
          const RowsView wb(w_.data() + b0, nb, k, Eigen::OuterStride<>(m_));
          block_gemv(false, vb, 1.0, y.data(), 0.0, vy.data());
          block_gemv(false, wb, 1.0, y.data(), 0.0, wy.data());
          const double* p = p_.data() + b0;
          S* t = cand + b0;
          for (Index j = 0; j < nb; ++j) {
            const double fp = free * p[j];
            const double rj = s * wy(j) + (fp - theta) * vy(j);
            rr += rj * rj;
            uu += vy(j) * vy(j);
            upu += p[j] * vy(j) * vy(j);
            uru += vy(j) * wy(j);
            double tj = rj;
            if (davidson) {
              double den = theta - fp;
              if (std::abs(den) < floor) den = den < 0 ? -floor : floor;
              tj = rj / den;
            }
            t[j] = tj;
            tb(j) = tj;
          }
          tt += tb.head(nb).squaredNorm();
          block_gemv(true, vb, 1.0, tb.data(), 1.0, a);
          block_gemv(true, wb, 1.0, tb.data(), 1.0, a + k);  // W't, while W's block is here
        }
        a[2 * k] += uu;
        a[2 * k + 1] += upu;
        a[2 * k + 2] += uru;
        a[dwidth - 2] += rr;
        a[dwidth - 1] += tt;
      });
      take_projections(acc, k);
      u_.head(k) = VectorXd::Map(acc.data() + k, k);
      wt_valid_ = true;
      // The Ritz vector's Rayleigh quotient and tangent from the stored vectors
      // themselves, not from G_P and G_R (theory/region.md, section 5).
      const double uu = acc[static_cast<std::size_t>(2 * k)];
      last_tangent_p_ = acc[static_cast<std::size_t>(2 * k + 1)] / uu;
      last_tangent_r_ = acc[static_cast<std::size_t>(2 * k + 2)] / uu;
      return std::sqrt(acc[static_cast<std::size_t>(dwidth) - 2] / uu);
    }
  }

  // Double storage, after residual(): the Ritz vector u = V y's own
  // u'(p o u) / u'u and u'Ru / u'u, computed from V and W in that pass.
  double tangent_p() const { return last_tangent_p_; }
  double tangent_r() const { return last_tangent_r_; }

  // Appends the candidate left by residual() or add(). Double storage:
  // classical Gram-Schmidt, repeated while a pass cancels more than 99 % of
  // the norm (one pass leaves an orthogonality error of about eps times the
  // cancellation factor). Float storage: stored as it is unless more than
  // 99 % of it lies in span(V) (then that part is subtracted first). Returns
  // false when the candidate lies in span(V) to rounding.
  bool add_candidate() {
    const double original = std::sqrt(tt_);
    if (!(original > 0) || !std::isfinite(original)) return false;
    for (int pass = 0;; ++pass) {
      // The candidate's part in span(V): V coef, with |t - V coef|^2 = |t|^2 - c'coef.
      VectorXd coef = c_.head(k_);
      if constexpr (kGram) {
        if (k_ > 0) coef = g_.topLeftCorner(k_, k_).ldlt().solve(coef);
      }
      const double left = tt_ - c_.head(k_).dot(coef);
      if (left > 1e-4 * tt_ || pass == 2) {
        const double nrm = std::sqrt(std::max(left, 0.0));
        if (!(nrm > 1e-13 * original) || !std::isfinite(nrm)) return false;
        // W'v_k from W't (double storage) only where |V't| <= |t - V V't|:
        // the earlier columns' rounding enters at most once (theory/region.md, section 5).
        if (left < 0.5 * tt_) wt_valid_ = false;
        append(nrm);
        return true;
      }
      subtract(coef);
      project();
      if (!(std::sqrt(tt_) > 1e-13 * original)) return false;
    }
  }

  Ritz ritz(double s) const {
    const MatrixXd h = (1.0 - s) * gp_.topLeftCorner(k_, k_) + s * gr_.topLeftCorner(k_, k_);
    Ritz z;
    if constexpr (kGram) {
      // The pencil (H, G), columns scaled to unit norm first; eigenvectors G-orthonormal.
      const VectorXd d = g_.diagonal().head(k_).cwiseSqrt().cwiseInverse();
      const MatrixXd hs = d.asDiagonal() * h * d.asDiagonal();
      const MatrixXd gs = d.asDiagonal() * g_.topLeftCorner(k_, k_) * d.asDiagonal();
      VectorXd w;
      MatrixXd v;
      if (!small_generalized_symmetric_eigen(hs, gs, w, v)) {  // G not positive definite: the caller starts over in double
        z.theta = std::numeric_limits<double>::quiet_NaN();
        z.basis = MatrixXd::Identity(k_, k_);
        z.y = z.basis.col(0);
        return z;
      }
      z.theta = w(k_ - 1);
      if (k_ > 1) z.second = w(k_ - 2);
      z.basis = d.asDiagonal() * v.rowwise().reverse();
    } else {
      VectorXd w;
      MatrixXd v;
      small_symmetric_eigen(h, w, v);
      z.theta = w(k_ - 1);
      if (k_ > 1) z.second = w(k_ - 2);
      z.basis = v.rowwise().reverse();
    }
    z.y = z.basis.col(0);
    return z;
  }

  // Float storage, several members (theory/region.md, section 7): appends
  // each unit vector V y_c (y_c the columns of y, in order) to Q (m x q float
  // columns, orthonormal, room reserved for qmax) where its part outside
  // span(Q) is more than same[c] of its norm. V Y in one pass over V (each
  // block of V read once for every column); then per column two classical
  // Gram-Schmidt passes. Block products in single precision, sums in double.
  void promote(const MatrixXd& y, std::vector<float>& qs, Index& q, Index qmax,
               const std::vector<double>& same) const {
    const Index k = y.rows(), cols = y.cols();
    const Eigen::MatrixXf yf = y.cast<float>();
    std::vector<float> xs(static_cast<std::size_t>(m_ * cols));
    const Index nbmax = std::min<Index>(block_rows(std::max(k, q)), kFloatBlock);
    parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
      for (Index b0 = lo; b0 < hi; b0 += nbmax)
        for (Index c = 0; c < cols; ++c)
          gemv(false, std::min(nbmax, hi - b0), k, 1.0F, v_.data() + b0, m_, yf.col(c).data(), 0.0F,
               xs.data() + static_cast<std::size_t>(c * m_) + b0);
    });
    for (Index c = 0; c < cols && q < qmax; ++c) {
      float* x = xs.data() + static_cast<std::size_t>(c * m_);
      const auto norm2 = [&] {
        return parallel_sum(m_, kChunk, [&](Index lo, Index hi) {
          double sum = 0.0;
          for (Index j = lo; j < hi; ++j) sum += static_cast<double>(x[j]) * static_cast<double>(x[j]);
          return sum;
        });
      };
      const double first = std::sqrt(norm2());
      if (!(first > 0) || !std::isfinite(first)) continue;
      for (int pass = 0; pass < 2 && q > 0; ++pass) {
        const std::vector<double> acc = parallel_sums(m_, kChunk, q, [&](Index lo, Index hi, double* a) {
          Eigen::VectorXf part(q);
          for (Index b0 = lo; b0 < hi; b0 += nbmax) {
            gemv(true, std::min(nbmax, hi - b0), q, 1.0F, qs.data() + b0, m_, x + b0, 0.0F, part.data());
            for (Index i = 0; i < q; ++i) a[i] += static_cast<double>(part(i));
          }
        });
        const Eigen::VectorXf cf = VectorXd::Map(acc.data(), q).cast<float>();
        parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
          for (Index b0 = lo; b0 < hi; b0 += nbmax)
            gemv(false, std::min(nbmax, hi - b0), q, -1.0F, qs.data() + b0, m_, cf.data(), 1.0F, x + b0);
        });
      }
      const double left = std::sqrt(norm2());
      if (!(left > same[static_cast<std::size_t>(c)] * first) || !std::isfinite(left)) continue;
      if (qs.capacity() < static_cast<std::size_t>(qmax * m_)) qs.reserve(static_cast<std::size_t>(qmax * m_));
      qs.resize(static_cast<std::size_t>((q + 1) * m_));
      float* out = qs.data() + static_cast<std::size_t>(q * m_);
      const float inv = static_cast<float>(1.0 / left);
      parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
        for (Index j = lo; j < hi; ++j) out[j] = inv * x[j];
      });
      ++q;
    }
  }

  // V y (m x y.cols()) in double.
  MatrixXd combine(const MatrixXd& y) const {
    MatrixXd out(m_, y.cols());
    const Index k = y.rows();
    const Index nbmax = block_rows(k);
    parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
      MatrixXd buf(nbmax, k);
      for (Index b0 = lo; b0 < hi; b0 += nbmax) {
        const Index nb = std::min(nbmax, hi - b0);
        out.middleRows(b0, nb).noalias() = rows_as_double(v_, b0, nb, k, buf) * y;
      }
    });
    return out;
  }
  // The unit vector V y.
  VectorXd expand(const VectorXd& y) const {
    VectorXd v = combine(y);
    return v / v.norm();
  }
  double project_p(const VectorXd& y) const { return y.dot(gp_.topLeftCorner(k_, k_) * y); }
  double project_r(const VectorXd& y) const { return y.dot(gr_.topLeftCorner(k_, k_) * y); }

  // Thick restart: keep the span of the first `keep` columns of the k x k
  // basis Y (orthonormal, or G-orthonormal): V <- V Y, W <- W Y, in row
  // blocks; the pending candidate's projections follow.
  void restart(const MatrixXd& basis, Index keep) {
    const Store y = basis.leftCols(keep).template cast<S>();
    // Row blocks through BLAS gemm (threaded): V and W are read once.
    const Index block = std::min<Index>(m_, Index{1} << 15);
    Store tmp(block, keep);
    for (Index row = 0; row < m_; row += block) {
      const Index nb = std::min(block, m_ - row);
      for (Store* a : {&v_, &w_}) {
        gemm(false, false, nb, keep, k_, S{1}, a->data() + row, m_, y.data(), k_, S{0}, tmp.data(), block);
        a->block(row, 0, nb, keep) = tmp.topRows(nb);
      }
    }
    const MatrixXd yd = basis.leftCols(keep);
    const auto congruence = [&](MatrixXd& g) {
      const MatrixXd t = yd.transpose() * g.topLeftCorner(k_, k_) * yd;
      g.topLeftCorner(keep, keep) = 0.5 * (t + t.transpose());
    };
    congruence(gp_);
    congruence(gr_);
    c_.head(keep) = yd.transpose() * c_.head(k_);
    u_.head(keep) = yd.transpose() * u_.head(k_);  // W't (both storages)
    if constexpr (kGram) {
      congruence(g_);
      q_.head(keep) = yd.transpose() * q_.head(k_);
      if (cand_ != keep) {  // the pending candidate moves next to the kept columns
        v_.col(keep) = v_.col(cand_);
        cand_ = keep;
      }
    }
    k_ = keep;
  }

 private:
  // Parallel ranges of at least kChunk rows, worked through in blocks of
  // block_rows(k) rows: a block of V and W stays in cache while several
  // products use it, and is small enough (rows x k < 9216) for OpenBLAS to
  // run its dgemv on the calling thread (these run on our threads already).
  static constexpr Index kChunk = Index{1} << 16;
  // Float storage: at most this many rows per single-precision block product
  // (its sums in float), the blocks' sums added in double.
  static constexpr Index kFloatBlock = 256;
  static Index block_rows(Index cols) { return std::clamp<Index>(9000 / std::max<Index>(cols, 1) / 8 * 8, 64, 2048); }

  S* candidate() { return kGram ? v_.col(cand_).data() : t_.data(); }
  const S* candidate() const { return kGram ? v_.col(cand_).data() : t_.data(); }

  // The accumulators of residual()/project(): [V't, (V'(p o t), W't, t'(p o t))], ..., |t|^2 last.
  void take_projections(const std::vector<double>& acc, Index k) {
    c_.head(k) = VectorXd::Map(acc.data(), k);
    if constexpr (kGram) {
      q_.head(k) = VectorXd::Map(acc.data() + k, k);
      u_.head(k) = VectorXd::Map(acc.data() + 2 * k, k);
      tpt_ = acc[static_cast<std::size_t>(3 * k)];
    }
    tt_ = acc.back();
  }

  // The candidate's projections (as residual() leaves them) and |t|^2.
  void project() {
    wt_valid_ = false;
    const Index k = k_;
    const Index width = kGram ? 3 * k + 3 : k + 2;
    const S* const cand = candidate();
    const Index nbmax = block_rows(k);
    const std::vector<double> acc = parallel_sums(m_, kChunk, width, [&](Index lo, Index hi, double* a) {
      MatrixXd vbuf(nbmax, k), wbuf(nbmax, k);
      VectorXd tb(nbmax), pt(nbmax);
      for (Index b0 = lo; b0 < hi; b0 += nbmax) {
        const Index nb = std::min(nbmax, hi - b0);
        to_double(cand + b0, nb, tb.data());
        a[width - 1] += tb.head(nb).squaredNorm();
        const RowsView vb = rows_as_double(v_, b0, nb, k, vbuf);
        block_gemv(true, vb, 1.0, tb.data(), 1.0, a);
        if constexpr (kGram) {
          pt.head(nb) = p_.segment(b0, nb).cwiseProduct(tb.head(nb));
          a[width - 3] += pt.head(nb).dot(tb.head(nb));
          block_gemv(true, vb, 1.0, pt.data(), 1.0, a + k);
          block_gemv(true, rows_as_double(w_, b0, nb, k, wbuf), 1.0, tb.data(), 1.0, a + 2 * k);
        }
      }
    });
    take_projections(acc, k);
  }

  // t -= V coef.
  void subtract(const VectorXd& coef) {
    const Index k = k_;
    S* const cand = candidate();
    const Index nbmax = block_rows(k);
    parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
      MatrixXd vbuf(nbmax, k);
      VectorXd tb(nbmax);
      for (Index b0 = lo; b0 < hi; b0 += nbmax) {
        const Index nb = std::min(nbmax, hi - b0);
        to_double(cand + b0, nb, tb.data());
        block_gemv(false, rows_as_double(v_, b0, nb, k, vbuf), -1.0, coef.data(), 1.0, tb.data());
        for (Index j = 0; j < nb; ++j) cand[b0 + j] = static_cast<S>(tb(j));
      }
    });
  }

  // Appends the candidate as column k with its image; nrm = the norm of its part outside span(V).
  void append(double nrm) {
    if constexpr (kGram) {
      append_as_is();
    } else {
      append_orthonormal(nrm);
    }
  }

  // v_k'w_k, summed in double.
  double column_dot(Index k) const {
    const S* x = v_.col(k).data();
    const S* w = w_.col(k).data();
    return parallel_sum(m_, kChunk, [&](Index lo, Index hi) {
      double sum = 0.0;
      for (Index j = lo; j < hi; ++j) sum += static_cast<double>(x[j]) * static_cast<double>(w[j]);
      return sum;
    });
  }

  // Float storage: column k is the candidate already; its columns of G, G_P
  // and G_R came with it, but for t'Rt.
  void append_as_is() {
    const Index k = k_;
    apply_(v_.col(k).data(), w_.col(k).data());
    ++applications_;
    const double xrx = column_dot(k);
    set_columns(k, c_.head(k), tt_, q_.head(k), tpt_, u_.head(k), xrx);
  }

  // Double storage: column k = (t - V c) / nrm, with in the same pass
  // V'(p o v_k), v_k'(p o v_k) and |v_k|^2 (the stored, rounded v_k); then
  // its image and V'w_k.
  void append_orthonormal(double nrm) {
    const Index k = k_;
    const double inv = 1.0 / nrm;
    const Index nbmax = block_rows(k + 1);
    const std::vector<double> acc = parallel_sums(m_, kChunk, k + 2, [&](Index lo, Index hi, double* a) {
      MatrixXd vbuf(nbmax, k);
      VectorXd xb(nbmax), px(nbmax);
      S* x = v_.col(k).data();
      double xx = 0.0, xpx = 0.0;
      for (Index b0 = lo; b0 < hi; b0 += nbmax) {
        const Index nb = std::min(nbmax, hi - b0);
        const RowsView vb = rows_as_double(v_, b0, nb, k, vbuf);
        to_double(t_.data() + b0, nb, xb.data());
        block_gemv(false, vb, -1.0, c_.data(), 1.0, xb.data());
        const double* p = p_.data() + b0;
        for (Index j = 0; j < nb; ++j) {
          x[b0 + j] = static_cast<S>(xb(j) * inv);
          const double xj = static_cast<double>(x[b0 + j]);
          xx += xj * xj;
          px(j) = p[j] * xj;
          xpx += px(j) * xj;
        }
        block_gemv(true, vb, 1.0, px.data(), 1.0, a);
      }
      a[k] += xx;
      a[k + 1] += xpx;
    });
    VectorXd q = VectorXd::Map(acc.data(), k);
    const double xx = acc[static_cast<std::size_t>(k)];
    double xpx = acc[static_cast<std::size_t>(k) + 1];
    // The norm came from |t|^2 - |c|^2; where cancellation made it inexact, rescale.
    double f = 1.0;
    if (std::abs(xx - 1.0) > 1e-13) {
      f = 1.0 / std::sqrt(xx);
      S* x = v_.col(k).data();
      parallel_ranges(m_, kChunk, [&](Index lo, Index hi) {
        for (Index j = lo; j < hi; ++j) x[j] = static_cast<S>(f * static_cast<double>(x[j]));
      });
      q *= f;
      xpx *= f * f;
    }
    apply_(v_.col(k).data(), w_.col(k).data());
    ++applications_;
    if (wt_valid_) {
      // G_R's new column V'(R v_k) = W'v_k (R symmetric) = (W't - G_R c) / nrm,
      // W't from the residual pass: no pass over V after the application, only
      // v_k'w_k (theory/region.md, section 5).
      const VectorXd gr = f * inv * (u_.head(k) - gr_.topLeftCorner(k, k) * c_.head(k));
      const double xrx = column_dot(k);
      set_columns(k, VectorXd::Zero(k), 1.0, q, xpx, gr, xrx);
      wt_valid_ = false;
      return;
    }
    const Index k1 = k + 1;
    const std::vector<double> gr = parallel_sums(m_, kChunk, k1, [&](Index lo, Index hi, double* a) {
      MatrixXd vbuf(nbmax, k1);
      VectorXd wb(nbmax);
      for (Index b0 = lo; b0 < hi; b0 += nbmax) {
        const Index nb = std::min(nbmax, hi - b0);
        to_double(w_.col(k).data() + b0, nb, wb.data());
        block_gemv(true, rows_as_double(v_, b0, nb, k1, vbuf), 1.0, wb.data(), 1.0, a);
      }
    });
    set_columns(k, VectorXd::Zero(k), 1.0, q, xpx, VectorXd::Map(gr.data(), k), gr[static_cast<std::size_t>(k)]);
  }

  // Column k of G, G_P and G_R (and the mirrored rows); k grows by one.
  void set_columns(Index k, const VectorXd& g, double gkk, const VectorXd& gp, double gpkk, const VectorXd& gr,
                   double grkk) {
    const auto put = [k](MatrixXd& a, const VectorXd& col, double diag) {
      a.col(k).head(k) = col;
      a.row(k).head(k) = col.transpose();
      a(k, k) = diag;
    };
    put(g_, g, gkk);
    put(gp_, gp, gpkk);
    put(gr_, gr, grkk);
    k_ = k + 1;
  }

  const VectorXd& p_;
  const Apply& apply_;
  Index m_, kmax_, k_ = 0;
  Store v_, w_;           // float storage: V has one more column, for the candidate
  MatrixXd gp_, gr_, g_;  // g_ = V'V (the identity for double storage)
  Vec t_;                 // the candidate of double storage (m long, allocated once:
                          // at m = 8.4 M a fresh vector per step cost more in page faults than the arithmetic)
  Index cand_ = 0;        // float storage: the column of V holding the candidate
  VectorXd c_, q_, u_;    // the candidate's V't, and (float) V'(p o t), W't
  double tt_ = 0.0, tpt_ = 0.0;  // |t|^2, t'(p o t)
  bool wt_valid_ = false;         // double storage: u_ holds W't for the pending candidate
  double last_tangent_p_ = 0.0, last_tangent_r_ = 0.0;  // double storage: see residual()
  Index applications_ = 0;
};

// Double storage (every certificate): the value is the Ritz vector's own
// Rayleigh quotient and the tangent its own (u'Pu, u'Ru), both from the pass
// over the stored V and W, so neither depends on how G_P and G_R were
// accumulated; Kato-Temple holds for the Rayleigh quotient, and rho, the
// residual about the Ritz value, is at least the one about it (theory/region.md,
// sections 4-5). Float storage (nothing certified): the Ritz data.
template <class S>
void record(FamilyMember& out, const Subspace<S>& sub, const Ritz& z, double rho, double tol) {
  out.residual = rho;
  if constexpr (std::is_same_v<S, double>) {
    Ritz rq = z;
    out.tangent_p = sub.tangent_p();
    out.tangent_r = sub.tangent_r();
    rq.theta = (1.0 - out.s) * out.tangent_p + out.s * out.tangent_r;
    out.value = rq.theta;
    out.error = error_bound(rho, rq, tol, sub.size());
  } else {
    out.value = z.theta;
    out.error = error_bound(rho, z, tol, sub.size());
    out.tangent_p = sub.project_p(z.y);
    out.tangent_r = sub.project_r(z.y);
  }
}

// The single-precision phase ends at this relative residual (single
// precision resolves about 7e-7 on the clustered class of bench/), or after
// kLowStall steps without a 10 % gain once below 100 times it (4 kLowStall
// above: Krylov residuals plateau early on, which is no reason to stop);
// kLowKeep Ritz vectors are kept (theory/region.md, section 7).
constexpr double kLowTarget = 1e-6;
constexpr int kLowStall = 4;
constexpr Index kLowKeep = 2;

// Several members: at most this many directions promoted from the
// single-precision phase, each kept only where it has more than kLowSame of
// its norm outside the span of the earlier ones.
constexpr Index kLowPromoteShared = 16;
constexpr Index kLowMinShared = 8;
constexpr double kLowSame = 1e-3;
constexpr double kLowSameGap = 1e-1;

// How a run of iterate() ended.
enum class PhaseEnd {
  finished,  // the member's status is final
  promote,   // single-precision phase over: continue in double from the seed
  redo,      // single-precision phase failed (non-finite): start over in double
};

// When the single-precision phase has done what it can: the residual near
// what single precision resolves, no longer improving (kLowStall checks
// without a 10 % gain; four times that while still far from it), certified,
// the subspace full, or half the budget spent.
class LowPhaseStop {
 public:
  bool operator()(double rho, double value, bool certified, bool full, Index matvecs, Index cap) {
    if (rho < 0.9 * best_) {
      best_ = rho;
      since_best_ = 0;
    } else {
      ++since_best_;
    }
    const int stall = rho <= 100 * kLowTarget * std::abs(value) ? kLowStall : 4 * kLowStall;
    return rho <= kLowTarget * std::abs(value) || since_best_ >= stall || certified || full || matvecs >= cap / 2;
  }

 private:
  double best_ = std::numeric_limits<double>::infinity();
  int since_best_ = 0;
};

// Iterates one member in the subspace. `spent`: applications already spent
// on it elsewhere (the single-precision phase). With `seed` set this is the
// single-precision phase (theory/region.md, section 7): nothing is certified
// from its images; it ends once the residual is near what single precision
// resolves, stops improving, looks certified, or has used half the budget,
// leaving in *seed its top `carry` Ritz vectors (in double) to carry over.
template <class S>
PhaseEnd iterate(Subspace<S>& sub, FamilyMember& out, Index spent, double tol, Index cap, Index& restarts,
                 bool want_vector, MatrixXd* seed, Index carry = 0) {
  const bool low = seed != nullptr;
  const Index before = sub.applications(), m = sub.dimension();
  LowPhaseStop low_phase_over;
  while (true) {
    const Ritz z = sub.ritz(out.s);
    const double rho = sub.residual(out.s, z, true);
    out.matvecs = spent + sub.applications() - before;
    record(out, sub, z, rho, tol);
    if (!std::isfinite(out.value) || !std::isfinite(rho)) {
      if (low) return PhaseEnd::redo;  // out of single precision's range
      out.status = Status::numerical_failure;
      out.message = "the Ritz value or residual is not finite";
      return PhaseEnd::finished;
    }
    const bool certified = out.error <= tol * std::abs(out.value);
    if (low) {
      if (low_phase_over(rho, out.value, certified, sub.size() == m, out.matvecs, cap)) {
        *seed = z.basis.leftCols(std::min(sub.size(), carry));
        return PhaseEnd::promote;
      }
    } else {
      if (certified || sub.size() == m) {
        if (want_vector) out.vector = sub.expand(z.y);
        out.status = Status::converged;
        return PhaseEnd::finished;
      }
      if (out.matvecs >= cap) {
        if (want_vector) out.vector = sub.expand(z.y);
        out.status = Status::not_converged;
        out.message = "did not converge: not certified after " + std::to_string(out.matvecs) +
                      " applications (error bound " + fmt(out.error / std::abs(out.value)) + " relative)";
        return PhaseEnd::finished;
      }
    }
    if (sub.size() == sub.capacity()) {
      sub.restart(z.basis, std::max<Index>(1, sub.capacity() / 2));
      ++restarts;
    }
    // The Davidson direction, else the plain residual; when neither adds a
    // direction the subspace is invariant to rounding.
    if (sub.add_candidate()) continue;
    const Ritz now = sub.ritz(out.s);  // after a restart, z in the new basis
    sub.residual(out.s, now, false);
    if (sub.add_candidate()) continue;
    if (low) {  // nothing is certified from single-precision images: the double phase finds it again
      *seed = now.basis.leftCols(std::min(sub.size(), carry));
      return PhaseEnd::promote;
    }
    if (want_vector) out.vector = sub.expand(now.y);
    out.status = out.error <= 1e3 * tol * std::abs(out.value) ? Status::converged : Status::not_converged;
    out.message = "the subspace became invariant (residual " + fmt(rho) + ")";
    return PhaseEnd::finished;
  }
}

// One member in the shared double subspace; an empty subspace is seeded with
// the columns of `seed` first. `cap` bounds the applications it may spend.
void solve_member(Subspace<double>& sub, FamilyMember& out, const MatrixXd& seed, Index spent, double tol, Index cap,
                  Index& restarts, bool want_vector) {
  out.method = Method::lanczos;
  const Index before = sub.applications();
  if (sub.size() == 0) {
    for (Index j = 0; j < seed.cols(); ++j) (void)sub.add(seed.col(j));
    if (sub.size() == 0) {
      out.matvecs = spent;
      out.status = Status::numerical_failure;
      out.message = "the start vector is zero or not finite";
      return;
    }
  }
  iterate(sub, out, spent + sub.applications() - before, tol, cap, restarts, want_vector, nullptr);
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
std::vector<std::size_t> subspace_members(const VectorXd& p, const ApplyFn& counted, const LowApplyFn& low,
                                          const VectorXd& start, const SolverOptions& opt, Index kmax,
                                          bool want_vectors, FamilyResult& res) {
  std::vector<std::size_t> order(res.members.size()), pending;
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return res.members[a].s > res.members[b].s; });
  const Index cap = opt.max_iterations * std::max<Index>(1, kmax - kmax / 2);
  MatrixXd seed = start;
  std::vector<Index> spent(order.size(), 0);
  std::vector<float> promoted;  // several members: their single-precision Ritz vectors, orthonormal, m x q
  Index q = 0;
  // Several members in fewer than kLowMinShared vectors: double only (Q
  // would leave the members too little room, and too few vectors to judge
  // their gaps by: theory/region.md, section 7).
  if (low && !(order.size() > 1 && kmax < kLowMinShared)) {
    // The single-precision phase in a float subspace, freed before the double
    // one is allocated (theory/region.md, section 7). One member: it carries
    // kLowKeep Ritz vectors. Several: every member runs its phase in the
    // shared float subspace, largest s first, and leaves its top kLowKeep
    // Ritz vectors (the second for its gap); the double subspace starts from
    // the span of these (at most min(kLowPromoteShared, K / 2) directions; a
    // direction within kLowSame of the span of the earlier ones adds nothing).
    Subspace<float> single(p, low, kmax);
    // Q fills at most half the double subspace: the members need room to iterate.
    const Index qmax = std::min<Index>(kLowPromoteShared, std::max<Index>(1, kmax / 2));
    if (single.add(start)) {
      const bool shared = order.size() > 1;
      for (std::size_t i = 0; i < order.size(); ++i) {
        MatrixXd kept;
        const Index before = i == 0 ? 0 : single.applications();  // the start's application: the first member's
        const PhaseEnd end = iterate(single, res.members[order[i]], 0, opt.tolerance, cap, res.restarts, false,
                                     &kept, kLowKeep);
        spent[i] = single.applications() - before;
        if (end != PhaseEnd::promote) break;
        if (!shared) {
          seed = single.combine(kept);
          break;
        }
        // The top vector unless within kLowSame of span(Q); the second (its
        // gap) unless within kLowSameGap: a Ritz value's error is quadratic
        // in its vector's.
        std::vector<double> same(static_cast<std::size_t>(kept.cols()), kLowSameGap);
        if (!same.empty()) same[0] = kLowSame;
        single.promote(kept, promoted, q, qmax, same);
        if (q == qmax) break;
      }
    }
    res.low_precision_matvecs = single.applications();
  }
  Subspace<double> sub(p, counted, kmax);
  if (q > 0) {
    VectorXd x(p.size());
    for (Index c = 0; c < q; ++c) {
      const float* col = promoted.data() + static_cast<std::size_t>(c) * static_cast<std::size_t>(p.size());
      for (Index j = 0; j < p.size(); ++j) x(j) = static_cast<double>(col[j]);
      (void)sub.add(x);
    }
    std::vector<float>().swap(promoted);
    spent[0] += sub.applications();  // the promotions, counted with the first member
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t j = order[i];
    solve_member(sub, res.members[j], seed, spent[i], opt.tolerance, cap, res.restarts, want_vectors);
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
                        bool want_vectors, const LowApplyFn& low_precision) {
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
    const LowApplyFn counted_low = !low_precision ? LowApplyFn() : LowApplyFn([&](const float* x, float* y) {
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
