#pragma once
/// \file geometry.hpp
/// \brief The local geometry of an interpolating minimum of the square loss,
/// in reduced coordinates (theory/reduction.md).
///
/// Convention (the library's only one): per-sample loss l_i = 1/2 |f(x_i) - y_i|^2,
/// training loss L = (1/n) sum_i l_i. At an interpolating minimum the
/// per-sample Hessians are h_i = J_i^T J_i (J_i the c x p Jacobian of sample i)
/// and H = (1/n) sum_i h_i.
///
/// Geometry reduces everything to range(H), of dimension r = rank(J): it finds
/// Z ((n c) x r) with Z^T Z = n diag(d), d the nonzero eigenvalues of H in
/// descending order, such that in an orthonormal basis of range(H)
///   H = diag(d),   h_i = Z_i^T Z_i   (Z_i = the c rows of sample i).
/// (theory/reduction.md, eqs. 2-4). It is built from the stacked Jacobian
/// J ((n c) x p, row i*c + k = d f_k(x_i) / d theta) or from the NTK Gram
/// K = J J^T; it uses the eigendecomposition of K (sample space) or of J^T J
/// (parameter space), whichever is smaller. Inputs far from unit scale are
/// reduced in rescaled units and scaled back (theory/scaling.md); every
/// routine taking a Geometry gives the same answer, in the user's units,
/// for J and for 2^k J (|J| entries between about 1e-150 and 1e150).
///
/// \code
/// Eigen::MatrixXd J = ...;                       // (n*c) x p, sample-major
/// auto g = sgdstab::Geometry::from_jacobian(J, /*outputs=*/c);
/// double sharpness = g.lambda_max();             // lambda_max(H)
/// \endcode
#include <Eigen/Core>
#include <functional>
#include <string>
#include <vector>

#include "sgdstab/options.hpp"
#include "sgdstab/sampling.hpp"

namespace sgdstab {

/// Options of the reduction. validate() throws sgdstab::invalid_argument.
struct ReductionOptions {
  /// Eigenvalues of the Gram (equivalently of J^T J) at most
  /// rank_tolerance * (largest eigenvalue) are treated as zero. A value <= 0
  /// selects the default 10 * max(n c, p) * machine epsilon. Independently of
  /// this, eigenvalues no larger than 2 |most negative eigenvalue| are treated
  /// as round-off (the negative ones show the noise floor of the input).
  double rank_tolerance = 0.0;
  /// A Gram input may be asymmetric by at most gram_tolerance * max|K_ij| and
  /// have negative eigenvalues down to -gram_tolerance * lambda_max(K);
  /// beyond that it is rejected as not a Gram matrix.
  double gram_tolerance = 1e-6;
  Space space = Space::automatic;
  /// Memory the reduction may use, in bytes; 0 = what the system has available.
  double memory_limit_bytes = 0.0;
  void validate() const;
};

/// ReductionOptions' table (options.hpp): name, kind, default, help and rule of each field.
template <>
const std::vector<OptionField<ReductionOptions>>& option_table<ReductionOptions>();

/// Reduced geometry at an interpolating minimum. Immutable after construction.
class Geometry {
 public:
  /// From the stacked per-sample Jacobian ((n c) x p, sample-major rows).
  /// \throws sgdstab::invalid_argument on empty input, rows not divisible by
  ///   `outputs`, NaN/Inf entries, or rank 0.
  /// \throws sgdstab::resource_error when the reduction would not fit in memory.
  static Geometry from_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                const ReductionOptions& options = {});

  /// The same from a row-major (C-order) Jacobian, read in place without a
  /// copy (NumPy's default layout; the Python package passes such arrays here).
  /// Same result as from_jacobian up to rounding (a different BLAS kernel).
  static Geometry from_row_major_jacobian(const Eigen::Ref<const RowMatrixXd>& jacobian, Index outputs,
                                          const ReductionOptions& options = {});

  /// From the NTK Gram K = J J^T ((n c) x (n c), same ordering).
  /// \throws sgdstab::invalid_argument on a non-square, asymmetric, non-PSD,
  ///   non-finite or rank-0 matrix, or a size not divisible by `outputs`.
  static Geometry from_gram(const Eigen::Ref<const Eigen::MatrixXd>& gram, Index outputs,
                            const ReductionOptions& options = {});

  /// Directly from reduced coordinates: Z ((n c) x r) with Z^T Z = n diag(d).
  /// Used by the tests and by callers that already hold a factorization.
  static Geometry from_factor(Eigen::MatrixXd factor, Eigen::VectorXd hessian_eigenvalues,
                              Index outputs, Index params = 0);

  Index samples() const { return samples_; }  ///< n
  Index outputs() const { return outputs_; }  ///< c
  Index params() const { return params_; }    ///< p (0 when built from a Gram)
  Index rank() const { return hessian_eigenvalues_.size(); }  ///< r = dim range(H)
  Space space() const { return space_; }      ///< where the reduction was computed

  /// Nonzero eigenvalues d of H, descending (H = diag(d) in reduced coordinates).
  const Eigen::VectorXd& hessian_eigenvalues() const { return hessian_eigenvalues_; }
  /// Z, (n c) x r: h_i = Z_i^T Z_i with Z_i = rows i*c .. i*c+c-1.
  const Eigen::MatrixXd& factor() const { return factor_; }
  /// h_i in reduced coordinates (r x r).
  Eigen::MatrixXd per_sample_hessian(Index i) const;

  double lambda_max() const { return hessian_eigenvalues_(0); }  ///< sharpness lambda_max(H)
  double hessian_trace() const { return hessian_eigenvalues_.sum(); }  ///< Tr H
  /// |H|_F (without overflow or underflow in the squares: J scaled by 1e-150 has |H|_F ~ 1e-300).
  double hessian_frobenius() const {
    const double top = hessian_eigenvalues_(0);  // the largest: d is positive and descending
    return top * (hessian_eigenvalues_ / top).norm();
  }

  /// Largest discarded Gram eigenvalue (0 when none was discarded).
  double largest_discarded() const { return largest_discarded_; }

 private:
  Geometry() = default;
  static Geometry from_eigen(const Eigen::MatrixXd& vectors, const Eigen::VectorXd& values,
                             Index n, Index c, Index p, Index dim, const ReductionOptions& options,
                             double negative_floor, Space space,
                             const std::function<Eigen::MatrixXd(const Eigen::MatrixXd&)>& times_jacobian);
  template <class Matrix>
  static Geometry jacobian_reduction(const Eigen::Ref<const Matrix>& jacobian, Index outputs,
                                     const ReductionOptions& options);
  void scale_units(int exponent, const std::string& where);
  Index samples_ = 0, outputs_ = 1, params_ = 0;
  Space space_ = Space::sample;
  Eigen::VectorXd hessian_eigenvalues_;
  Eigen::MatrixXd factor_;
  double largest_discarded_ = 0;
};

}  // namespace sgdstab
