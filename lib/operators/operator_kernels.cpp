// sum_i Z_i^T (Z_i S Z_i^T) Z_i in 2 n c r^2 flops: theory/operator.md, section 4.
#include "operators/operator_kernels.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "foundations/linalg.hpp"
#include "foundations/parallel.hpp"

namespace sgdstab::detail {

namespace {

using Eigen::Index;

// Calls f(std::integral_constant<Index, C>) with C = c for the common output
// counts 1 .. 10 (the loops below unrolled by the compiler) and C = 0 (c
// read at run time) otherwise.
template <class F>
void with_outputs(Index c, F&& f) {
  switch (c) {
    case 1: f(std::integral_constant<Index, 1>{}); return;
    case 2: f(std::integral_constant<Index, 2>{}); return;
    case 3: f(std::integral_constant<Index, 3>{}); return;
    case 4: f(std::integral_constant<Index, 4>{}); return;
    case 5: f(std::integral_constant<Index, 5>{}); return;
    case 6: f(std::integral_constant<Index, 6>{}); return;
    case 7: f(std::integral_constant<Index, 7>{}); return;
    case 8: f(std::integral_constant<Index, 8>{}); return;
    case 9: f(std::integral_constant<Index, 9>{}); return;
    case 10: f(std::integral_constant<Index, 10>{}); return;
    default: f(std::integral_constant<Index, 0>{}); return;
  }
}

// Blocks of samples lo .. hi - 1: ci += sum_k (W_i(:, k) - s_kk / 2 Z_i(:, k)) Z_i(:, k)^T,
// then ci = ci + ci^T. C = c, or 0 when c is only known at run time.
template <Index C, class Scalar>
void sample_blocks_range(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z,
                         const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& s,
                         const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& w, Index c_runtime, Index lo,
                         Index hi, double* blocks) {
  const Index c = C > 0 ? C : c_runtime, r = z.cols();
  // Columns in chunks of kChunk: a sample's block is read and written once
  // per chunk (held in registers for small C), not once per column.
  constexpr Index kChunk = 8;
  constexpr Index kAcc = C > 0 ? C * C : 1;
  double acc_fixed[kAcc];
  std::vector<double> acc_dynamic(C > 0 ? 0 : static_cast<std::size_t>(c * c));
  double* acc = C > 0 ? acc_fixed : acc_dynamic.data();
  const Scalar* wcol[kChunk];
  const Scalar* zcol[kChunk];
  double half_skk[kChunk];
  for (Index k0 = 0; k0 < r; k0 += kChunk) {
    const Index kn = std::min(kChunk, r - k0);
    for (Index t = 0; t < kn; ++t) {
      wcol[t] = w.col(k0 + t).data();
      zcol[t] = z.col(k0 + t).data();
      half_skk[t] = 0.5 * static_cast<double>(s(k0 + t, k0 + t));
    }
    for (Index i = lo; i < hi; ++i) {
      double* ci = blocks + i * c * c;
      for (Index e = 0; e < c * c; ++e) acc[e] = ci[e];
      for (Index t = 0; t < kn; ++t) {
        const Scalar* wi = wcol[t] + i * c;
        const Scalar* zi = zcol[t] + i * c;
        for (Index a = 0; a < c; ++a) {
          const double xa = static_cast<double>(wi[a]) - half_skk[t] * static_cast<double>(zi[a]);
          for (Index b = 0; b < c; ++b) acc[a * c + b] += xa * static_cast<double>(zi[b]);
        }
      }
      for (Index e = 0; e < c * c; ++e) ci[e] = acc[e];
    }
  }
  for (Index i = lo; i < hi; ++i) {
    double* ci = blocks + i * c * c;
    for (Index a = 0; a < c; ++a)
      for (Index b = a; b < c; ++b) ci[a * c + b] = ci[b * c + a] = ci[a * c + b] + ci[b * c + a];
  }
}

// Blocks C_i = X_i + X_i^T (c x c, row-major per sample) with
// X_i = Z_i (L - diag(S) / 2) Z_i^T and W = Z L (L: lower triangle of S,
// diagonal included), since S = L + L^T - diag(S). One pass over the columns.
template <class Scalar>
void sample_blocks(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z,
                   const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& s, Index c,
                   Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& w, std::vector<double>& blocks) {
  const Index r = z.cols(), n = z.rows() / c;
  trmm_lower_right(z, s, w);  // W = Z L
  blocks.assign(static_cast<std::size_t>(n * c * c), 0.0);
  // Samples split over threads: each owns its blocks.
  parallel_ranges(n, std::max<Index>(16, (Index{1} << 22) / std::max<Index>(1, c * c * r)), [&](Index lo, Index hi) {
    with_outputs(c, [&](auto cc) { sample_blocks_range<decltype(cc)::value>(z, s, w, c, lo, hi, blocks.data()); });
  });
}

// Signed square-root rows: C_i = sum_j lambda_ij u_ij u_ij^T; a row
// sqrt|lambda_ij| u_ij^T Z_i goes to P (lambda > 0) or M (lambda < 0). Row j
// of the stacked [P; M] is coef[j] . Z_{sample[j]}. Returns the number of P rows.
Index signed_root_rows(const std::vector<double>& blocks, Index n, Index c, std::vector<double>& coef_out,
                       std::vector<Index>& sample_out) {
  sample_out.clear();
  coef_out.clear();
  std::vector<Index> neg_sample;
  std::vector<double> neg_coef;
  if (c == 1) {
    for (Index i = 0; i < n; ++i) {
      const double lam = blocks[static_cast<std::size_t>(i)];
      if (lam > 0) { sample_out.push_back(i); coef_out.push_back(std::sqrt(lam)); }
      if (lam < 0) { neg_sample.push_back(i); neg_coef.push_back(std::sqrt(-lam)); }
    }
  } else {
    Eigen::MatrixXd ci(c, c);
    Eigen::VectorXd w;
    Eigen::MatrixXd v;
    for (Index i = 0; i < n; ++i) {
      const double* bi = blocks.data() + i * c * c;
      for (Index a = 0; a < c; ++a)
        for (Index b = 0; b < c; ++b) ci(a, b) = bi[a * c + b];
      small_symmetric_eigen(ci, w, v);
      for (Index j = 0; j < c; ++j) {
        const double lam = w(j);
        if (lam == 0) continue;
        const double root = std::sqrt(std::abs(lam));
        (lam > 0 ? sample_out : neg_sample).push_back(i);
        auto& coefs = lam > 0 ? coef_out : neg_coef;
        for (Index a = 0; a < c; ++a) coefs.push_back(root * v(a, j));
      }
    }
  }
  const Index kp = static_cast<Index>(sample_out.size());
  sample_out.insert(sample_out.end(), neg_sample.begin(), neg_sample.end());
  coef_out.insert(coef_out.end(), neg_coef.begin(), neg_coef.end());
  return kp;
}

// Rows 0 .. count - 1 of the stacked [P; M], columns lo .. hi - 1. C as in sample_blocks_range.
template <Index C, class Scalar>
void stack_rows_range(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z, Index c_runtime, Index count,
                      const std::vector<double>& coefs, const std::vector<Index>& sample, Index lo, Index hi,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& rows) {
  const Index c = C > 0 ? C : c_runtime;
  for (Index k = lo; k < hi; ++k) {
    const Scalar* zk = z.col(k).data();
    Scalar* pk = rows.col(k).data();
    for (Index j = 0; j < count; ++j) {
      const double* coef = coefs.data() + j * c;
      const Scalar* zi = zk + sample[static_cast<std::size_t>(j)] * c;
      double acc = 0;
      for (Index a = 0; a < c; ++a) acc += coef[a] * static_cast<double>(zi[a]);
      pk[j] = static_cast<Scalar>(acc);
    }
  }
}

// The stacked rows [P; M] at the top of `rows` (at most n c of them).
template <class Scalar>
void stack_rows(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z, Index c, Index count,
                const std::vector<double>& coefs, const std::vector<Index>& sample,
                Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& rows) {
  const Index r = z.cols();
  rows.resize(z.rows(), r);
  // Columns split over threads.
  parallel_ranges(r, std::max<Index>(1, (Index{1} << 22) / std::max<Index>(1, count * c)), [&](Index lo, Index hi) {
    with_outputs(c, [&](auto cc) { stack_rows_range<decltype(cc)::value>(z, c, count, coefs, sample, lo, hi, rows); });
  });
}

}  // namespace

template <class Scalar>
void sample_sum_lower(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& s, Index c, double scale,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& w,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& rows, std::vector<double>& blocks,
                      std::vector<double>& coef, std::vector<Index>& sample,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out) {
  const Index r = z.cols(), nc = z.rows(), n = nc / c;
  sample_blocks(z, s, c, w, blocks);
  const Index kp = signed_root_rows(blocks, n, c, coef, sample);
  const Index km = static_cast<Index>(sample.size()) - kp;
  stack_rows(z, c, kp + km, coef, sample, rows);
  syrk_lower(true, scale, rows.data(), kp, r, nc, out);
  syrk_lower(true, -scale, rows.data() + kp, km, r, nc, out);
}

double sample_sum_bytes(Index nc, Index r, std::size_t scalar_bytes) {
  return 2.0 * static_cast<double>(scalar_bytes) * static_cast<double>(nc) * static_cast<double>(r);
}

template void sample_sum_lower<double>(const Eigen::MatrixXd&, const Eigen::MatrixXd&, Index, double,
                                       Eigen::MatrixXd&, Eigen::MatrixXd&, std::vector<double>&,
                                       std::vector<double>&, std::vector<Index>&, Eigen::MatrixXd&);
template void sample_sum_lower<float>(const Eigen::MatrixXf&, const Eigen::MatrixXf&, Index, double,
                                      Eigen::MatrixXf&, Eigen::MatrixXf&, std::vector<double>&,
                                      std::vector<double>&, std::vector<Index>&, Eigen::MatrixXf&);

}  // namespace sgdstab::detail
