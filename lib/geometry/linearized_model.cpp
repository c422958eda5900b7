// A model given by its Jacobian products (include/sgdstab/linearized_model.hpp,
// theory/band.md, section 5).
#include "sgdstab/linearized_model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/errors.hpp"

namespace sgdstab {

using Eigen::MatrixXd;

MatrixXd LinearizedModel::hessian_times(const MatrixXd& v) const {
  return jacobian_transpose_times(jacobian_times(v)) / static_cast<double>(samples());
}

MatrixXd LinearizedModel::sample_grams() const {
  const Index n = samples(), c = outputs();
  detail::require(probe_chunk >= 1, "LinearizedModel::sample_grams",
                  "probe_chunk must be >= 1, got " + std::to_string(probe_chunk));
  const Index chunk = std::min(probe_chunk, n);
  check_memory(8.0 * static_cast<double>(params() + 2 * n * c) * static_cast<double>(chunk * c),
               "LinearizedModel::sample_grams (probing " + std::to_string(chunk) + " samples at a time)");
  const std::string where = "LinearizedModel::sample_grams (probing)";
  MatrixXd grams(n * c, c);
  for (Index first = 0; first < n; first += chunk) {
    const Index count = std::min(chunk, n - first);
    MatrixXd unit = MatrixXd::Zero(n * c, count * c);  // e_(i, k) for the chunk's samples i
    for (Index col = 0; col < count * c; ++col) unit(first * c + col, col) = 1.0;
    const MatrixXd back = jacobian_transpose_times(unit);
    detail::require(back.rows() == params() && back.cols() == count * c, where,
                    "jacobian_transpose_times() returned " + std::to_string(back.rows()) + " x " +
                        std::to_string(back.cols()) + ", expected " + std::to_string(params()) + " x " +
                        std::to_string(count * c));
    const MatrixXd columns = jacobian_times(back);  // K's columns of the chunk
    detail::require(columns.rows() == n * c && columns.cols() == count * c, where,
                    "jacobian_times() returned " + std::to_string(columns.rows()) + " x " +
                        std::to_string(columns.cols()) + ", expected " + std::to_string(n * c) + " x " +
                        std::to_string(count * c));
    for (Index s = 0; s < count; ++s)
      grams.middleRows((first + s) * c, c) = columns.block((first + s) * c, s * c, c, c);
  }
  return grams;
}

JacobianModel::JacobianModel(MatrixXd jacobian, Index outputs) : jacobian_(std::move(jacobian)), outputs_(outputs) {
  const std::string where = "JacobianModel";
  detail::require(jacobian_.rows() > 0 && jacobian_.cols() > 0, where,
                  "the Jacobian is empty (" + std::to_string(jacobian_.rows()) + " x " +
                      std::to_string(jacobian_.cols()) + ")");
  detail::require(outputs_ >= 1, where, "outputs C must be >= 1, got " + std::to_string(outputs_));
  detail::require(jacobian_.rows() % outputs_ == 0, where,
                  "the row count " + std::to_string(jacobian_.rows()) + " is not divisible by outputs C = " +
                      std::to_string(outputs_) + " (rows must be n*C, sample-major)");
  if (jacobian_.allFinite()) return;
  for (Index j = 0; j < jacobian_.cols(); ++j)  // name the first bad entry
    for (Index i = 0; i < jacobian_.rows(); ++i)
      if (!std::isfinite(jacobian_(i, j)))
        throw invalid_argument(where + ": entry (" + std::to_string(i) + ", " + std::to_string(j) +
                               ") is not finite (" + detail::fmt(jacobian_(i, j)) + ")");
}

JacobianModel JacobianModel::from_geometry(const Geometry& geometry) {
  return JacobianModel(geometry.factor(), geometry.outputs());
}

MatrixXd JacobianModel::jacobian_times(const MatrixXd& v) const {
  detail::require(v.rows() == params(), "JacobianModel::jacobian_times",
                  "V has " + std::to_string(v.rows()) + " rows, expected p = " + std::to_string(params()));
  return jacobian_ * v;
}

MatrixXd JacobianModel::jacobian_transpose_times(const MatrixXd& u) const {
  detail::require(u.rows() == jacobian_.rows(), "JacobianModel::jacobian_transpose_times",
                  "U has " + std::to_string(u.rows()) + " rows, expected n C = " + std::to_string(jacobian_.rows()));
  return jacobian_.transpose() * u;
}

MatrixXd JacobianModel::sample_grams() const {
  const Index n = samples(), c = outputs_;
  MatrixXd grams(n * c, c);
  for (Index i = 0; i < n; ++i) {
    const auto ji = jacobian_.middleRows(i * c, c);
    grams.middleRows(i * c, c).noalias() = ji * ji.transpose();
  }
  return grams;
}

}  // namespace sgdstab
