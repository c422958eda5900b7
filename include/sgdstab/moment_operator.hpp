#pragma once
/// \file moment_operator.hpp
/// \brief The second-moment operator of linearized SGD (theory/operator.md)
/// and its Spectra-compatible matrix-free forms (theory/threshold.md,
/// theory/spectral_radius.md).
///
/// Linearized SGD at an interpolating minimum is delta <- (I - eta H_xi) delta.
/// Its second moment S_t = E[delta_t delta_t^T] evolves by S_{t+1} = T(S_t),
///   T(S) = S - eta A(S) + eta^2 Q(S),   A(S) = H S + S H,
///   Q(S) = alpha H S H + beta (1/n) sum_i h_i S h_i,
/// with (alpha, beta) the factors of the sampling scheme (sampling.hpp).
/// Everything acts on symmetric r x r matrices in the reduced coordinates
/// of a Geometry, where H = diag(d) and h_i = Z_i^T Z_i.
///
/// Two operators in the Spectra concept (`Scalar`, `rows()`, `cols()`,
/// `perform_op(const Scalar* x, Scalar* y) const`) act on the packed
/// coordinates of symmetric matrices (pack()/unpack(): diagonal entries as
/// they are, off-diagonal ones times sqrt(2), so the Frobenius inner product
/// becomes the Euclidean one and both operators are symmetric matrices):
///  - PencilOperator: A^{-1/2} Q A^{-1/2}; eta* = 1 / its largest eigenvalue.
///  - TransitionOperator: T at a given eta; rho(T) = its largest eigenvalue.
///
/// \code
/// #include <Spectra/SymEigsSolver.h>
/// sgdstab::SecondMomentOperator T(geometry, /*batch=*/8, sgdstab::Sampling::without_replacement);
/// sgdstab::PencilOperator op(T);
/// Spectra::SymEigsSolver<sgdstab::PencilOperator> eigs(op, 1, 20);
/// eigs.init();
/// eigs.compute(Spectra::SortRule::LargestAlge);
/// double eta_star = 1.0 / eigs.eigenvalues()(0);
/// \endcode
///
/// The operators hold a reference to the Geometry (which must outlive them)
/// and scratch space: one object must not be applied from two threads at once.
#include <Eigen/Core>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/sampling.hpp"

namespace sgdstab {

/// Number of packed coordinates of an r x r symmetric matrix: r (r + 1) / 2.
Index packed_size(Index r);
/// Packs the lower triangle of symmetric s (off-diagonals scaled by sqrt 2).
Eigen::VectorXd pack(const Eigen::MatrixXd& s);
/// Inverse of pack.
Eigen::MatrixXd unpack(const Eigen::Ref<const Eigen::VectorXd>& x, Index r);

/// T, A and Q for one geometry, batch size and sampling scheme.
class SecondMomentOperator {
 public:
  /// \throws sgdstab::invalid_argument unless 1 <= batch <= n.
  SecondMomentOperator(const Geometry& geometry, Index batch,
                       Sampling sampling = Sampling::without_replacement);

  const Geometry& geometry() const { return *geometry_; }
  Index batch() const { return batch_; }
  Sampling sampling() const { return sampling_; }
  SamplingFactors factors() const { return factors_; }
  Index dimension() const { return geometry_->rank(); }  ///< r

  /// A(S) = H S + S H.
  Eigen::MatrixXd anticommutator(const Eigen::MatrixXd& s) const;
  /// Q(S) = E[H_xi S H_xi] = alpha H S H + beta (1/n) sum_i h_i S h_i.
  Eigen::MatrixXd quadratic(const Eigen::MatrixXd& s) const;
  /// T(S) = E[(I - eta H_xi) S (I - eta H_xi)].
  /// \throws sgdstab::invalid_argument unless lr > 0 is finite.
  Eigen::MatrixXd transition(const Eigen::MatrixXd& s, double lr) const;
  /// S_t = T^t(S_0) for t = 0..steps (steps + 1 matrices).
  std::vector<Eigen::MatrixXd> propagate(const Eigen::MatrixXd& s0, double lr, Index steps) const;

  /// Scratch-free core used by the Spectra operators: out = Q(s); s symmetric.
  void quadratic_into(const Eigen::MatrixXd& s, Eigen::MatrixXd& out) const;
  /// The same on lower triangles: reads the lower triangle of s, writes the
  /// lower triangle of Q(s) (the strict upper triangle of out is unspecified).
  /// Saves the two transposed copies a full symmetric matrix costs.
  void quadratic_lower_into(const Eigen::MatrixXd& s, Eigen::MatrixXd& out) const;
  /// Bytes of scratch space one application needs (for memory estimates).
  double workspace_bytes() const;

 private:
  void check_shape(const Eigen::MatrixXd& s, const char* where) const;
  const Geometry* geometry_;
  Index batch_;
  Sampling sampling_;
  SamplingFactors factors_;
  // scratch for quadratic_into
  mutable Eigen::MatrixXd w_, plus_;
  mutable std::vector<double> blocks_, rows_coef_;
  mutable std::vector<Index> rows_sample_;
};

/// Spectra operator A^{-1/2} Q A^{-1/2} on packed symmetric matrices.
class PencilOperator {
 public:
  using Scalar = double;
  explicit PencilOperator(const SecondMomentOperator& op);
  Index rows() const { return packed_size(op_->dimension()); }
  Index cols() const { return rows(); }
  void perform_op(const Scalar* x_in, Scalar* y_out) const;
  Index applications() const { return applications_; }
  /// Elementwise weights 1/sqrt(d_k + d_l) (the matrix of A^{-1/2}).
  const Eigen::MatrixXd& weights() const { return inv_sqrt_a_; }

 private:
  const SecondMomentOperator* op_;
  Eigen::MatrixXd inv_sqrt_a_;
  mutable Eigen::MatrixXd s_, q_;
  mutable Index applications_ = 0;
};

/// Spectra operator T (at a fixed learning rate) on packed symmetric matrices.
class TransitionOperator {
 public:
  using Scalar = double;
  /// \throws sgdstab::invalid_argument unless lr > 0 is finite.
  TransitionOperator(const SecondMomentOperator& op, double lr);
  Index rows() const { return packed_size(op_->dimension()); }
  Index cols() const { return rows(); }
  void perform_op(const Scalar* x_in, Scalar* y_out) const;
  Index applications() const { return applications_; }
  double lr() const { return lr_; }

 private:
  const SecondMomentOperator* op_;
  double lr_;
  mutable Eigen::MatrixXd s_, q_;
  mutable Index applications_ = 0;
};

}  // namespace sgdstab
