#pragma once
// Internal: the expensive part of the second-moment operator,
//   out (lower triangle) += scale sum_i Z_i^T (Z_i S Z_i^T) Z_i,
// in double (SecondMomentOperator) or single precision (the early
// applications of the mixed-precision eigensolver, low_precision.hpp).
// theory/operator.md, section 4.
#include <Eigen/Core>
#include <vector>

namespace sgdstab::detail {

/// Scratch space of sample_sum_lower, reused between calls.
template <class Scalar>
struct SampleSumWork {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> w, rows;
  std::vector<double> blocks, coef;
  std::vector<Eigen::Index> sample;
};

/// out (lower triangle, r x r) += scale sum_i Z_i^T (Z_i S Z_i^T) Z_i for Z
/// (n c x r, sample i's rows c i .. c i + c - 1) and S symmetric, of which
/// only the lower triangle is read. 2 n c r^2 flops (dtrmm/strmm and two
/// dsyrk/ssyrk); the c x c blocks and their eigendecompositions in double.
/// The scratch space is w and rows (n c x r), blocks, coef and sample.
template <class Scalar>
void sample_sum_lower(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& s, Eigen::Index c, double scale,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& w,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& rows, std::vector<double>& blocks,
                      std::vector<double>& coef, std::vector<Eigen::Index>& sample,
                      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out);

template <class Scalar>
void sample_sum_lower(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& z,
                      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& s, Eigen::Index c, double scale,
                      SampleSumWork<Scalar>& work, Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out) {
  sample_sum_lower(z, s, c, scale, work.w, work.rows, work.blocks, work.coef, work.sample, out);
}

/// Bytes of SecondMomentOperator's scratch space for an n c x r factor
/// (SecondMomentOperator::workspace_bytes).
double moment_workspace_bytes(Eigen::Index nc, Eigen::Index r);

/// Bytes of SampleSumWork<Scalar> for an n c x r factor.
double sample_sum_bytes(Eigen::Index nc, Eigen::Index r, std::size_t scalar_bytes);

}  // namespace sgdstab::detail
