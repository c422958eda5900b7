// sum_i Z_i^T (Z_i S Z_i^T) Z_i in 2 n c r^2 flops: theory/operator.md, section 4.
#include "operators/operator_kernels.hpp"

#include <Eigen/Core>
#include <cmath>

#include "foundations/linalg.hpp"
#include "foundations/parallel.hpp"

namespace sgdstab::detail {

namespace {

using Eigen::Index;

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
    for (Index k = 0; k < r; ++k) {
      const Scalar* wk = w.col(k).data();
      const Scalar* zk = z.col(k).data();
      const double half_skk = 0.5 * static_cast<double>(s(k, k));
      for (Index i = lo; i < hi; ++i) {
        double* ci = blocks.data() + i * c * c;
        const Scalar* wi = wk + i * c;
        const Scalar* zi = zk + i * c;
        for (Index a = 0; a < c; ++a) {
          const double xa = static_cast<double>(wi[a]) - half_skk * static_cast<double>(zi[a]);
          for (Index b = 0; b < c; ++b) ci[a * c + b] += xa * static_cast<double>(zi[b]);
        }
      }
    }
    for (Index i = lo; i < hi; ++i) {
      double* ci = blocks.data() + i * c * c;
      for (Index a = 0; a < c; ++a)
        for (Index b = a; b < c; ++b) ci[a * c + b] = ci[b * c + a] = ci[a * c + b] + ci[b * c + a];
    }
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

// The stacked rows [P; M] at the top of `rows` (at most n c of them).
template <class Scalar>
void stack_rows(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z, Index c, Index count,
                const std::vector<double>& coefs, const std::vector<Index>& sample,
                Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& rows) {
  const Index r = z.cols();
  rows.resize(z.rows(), r);
  // Columns split over threads.
  parallel_ranges(r, std::max<Index>(1, (Index{1} << 22) / std::max<Index>(1, count * c)), [&](Index lo, Index hi) {
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
