#pragma once
/// \file linearized_model.hpp
/// \brief A model given by its Jacobian products only: the matrix-free input
/// of the certified band (band.hpp, theory/band.md, section 5).
///
/// Linearized SGD at an interpolating minimum needs the per-sample Jacobians
/// J_i (C x p) of the outputs in the parameters, stacked sample-major into J
/// ((n C) x p, the layout of Geometry::from_jacobian). Loss convention of the
/// library: (1/2) mean over samples, so H = (1/n) J^T J and h_i = J_i^T J_i.
/// Where J is too large to hold (a real network on real data: n C = 10^5,
/// p = 10^6), a LinearizedModel gives the products instead:
///  - jacobian_times(V)           = J V        ((n C) x k from p x k: k Jacobian-vector products),
///  - jacobian_transpose_times(U) = J^T U      (p x k from (n C) x k: k vector-Jacobian products),
///  - sample_grams()              = the blocks J_i J_i^T stacked ((n C) x C),
/// and the library never forms J, H or the Gram K = J J^T.
///
/// Implementations: JacobianModel (a dense Jacobian, or a Geometry's reduced
/// factor Z, which is a Jacobian in r coordinates with the same H and h_i up
/// to rotation) and, from Python, `sgdstab.torch` for any `nn.Module`.
/// A subclass overrides the first two (and sample_grams when it has a faster
/// way than the default's probing).
///
/// \code
/// sgdstab::JacobianModel model(J, /*outputs=*/10);
/// Eigen::MatrixXd hv = model.hessian_times(v);  // (1/n) J^T J v
/// \endcode
#include <Eigen/Core>

#include "sgdstab/geometry.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {

/// The products of a linearized model (see the file comment). Implementations
/// must be deterministic and const-safe for one caller at a time.
class LinearizedModel {
 public:
  virtual ~LinearizedModel() = default;

  virtual Index samples() const = 0;  ///< n
  virtual Index outputs() const = 0;  ///< C
  virtual Index params() const = 0;   ///< p

  /// J V for V of shape p x k: (n C) x k, sample-major rows.
  virtual Eigen::MatrixXd jacobian_times(const Eigen::MatrixXd& v) const = 0;
  /// J^T U for U of shape (n C) x k: p x k.
  virtual Eigen::MatrixXd jacobian_transpose_times(const Eigen::MatrixXd& u) const = 0;
  /// The per-sample Gram blocks J_i J_i^T (C x C), stacked: rows i C .. i C + C - 1.
  /// Default: probing, J (J^T E) for the unit vectors E of up to `probe_chunk`
  /// samples at a time (n C products each way).
  virtual Eigen::MatrixXd sample_grams() const;

  /// H V = (1/n) J^T (J V): one product each way per column.
  Eigen::MatrixXd hessian_times(const Eigen::MatrixXd& v) const;

  /// Samples per probing chunk of the default sample_grams.
  Index probe_chunk = 64;
};

/// A LinearizedModel from a dense Jacobian held in memory (a copy).
class JacobianModel : public LinearizedModel {
 public:
  /// \throws sgdstab::invalid_argument on an empty Jacobian, outputs < 1,
  ///   rows not divisible by outputs, or NaN/Inf entries.
  JacobianModel(Eigen::MatrixXd jacobian, Index outputs);
  /// The reduced factor Z of a Geometry as the Jacobian (p = r): the same
  /// stability problem, products in r coordinates.
  static JacobianModel from_geometry(const Geometry& geometry);

  Index samples() const override { return jacobian_.rows() / outputs_; }
  Index outputs() const override { return outputs_; }
  Index params() const override { return jacobian_.cols(); }
  Eigen::MatrixXd jacobian_times(const Eigen::MatrixXd& v) const override;
  Eigen::MatrixXd jacobian_transpose_times(const Eigen::MatrixXd& u) const override;
  Eigen::MatrixXd sample_grams() const override;  ///< directly, J_i J_i^T
  const Eigen::MatrixXd& jacobian() const { return jacobian_; }

 private:
  Eigen::MatrixXd jacobian_;
  Index outputs_;
};

}  // namespace sgdstab
