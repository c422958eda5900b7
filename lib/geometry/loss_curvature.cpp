// Per-sample loss curvature and frozen diagonal preconditioners as
// transforms of the Jacobian and the Gram (theory/loss_curvature.md,
// theory/adaptive.md).
#include "sgdstab/loss_curvature.hpp"

#include <Eigen/Eigenvalues>
#include <cmath>
#include <string>

#include "foundations/check.hpp"

namespace sgdstab {

namespace {

std::string shape(Index rows, Index cols) { return std::to_string(rows) + " x " + std::to_string(cols); }

// n for stacked curvatures with C columns; checks the shape.
Index curvature_samples(const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs, const std::string& where) {
  detail::require(outputs >= 1, where, "outputs C must be >= 1, got " + std::to_string(outputs));
  detail::require(curvature.cols() == outputs && curvature.rows() >= outputs && curvature.rows() % outputs == 0,
                  where,
                  "the curvature must be (n C) x C (the S_i stacked, C = " + std::to_string(outputs) + "), got " +
                      shape(curvature.rows(), curvature.cols()));
  return curvature.rows() / outputs;
}

}  // namespace

Eigen::MatrixXd softmax_curvature(const Eigen::Ref<const Eigen::MatrixXd>& probabilities, double tolerance) {
  const std::string where = "softmax_curvature";
  detail::require(std::isfinite(tolerance) && tolerance >= 0.0, where,
                  "tolerance must be finite and >= 0, got " + detail::fmt(tolerance));
  const Index n = probabilities.rows(), c = probabilities.cols();
  detail::require(n >= 1 && c >= 1, where, "the probabilities are empty (" + shape(n, c) + ")");
  detail::require(c >= 2, where,
                  "softmax needs C >= 2 outputs (one per class), got 1; for a single logit with a sigmoid give its "
                  "curvature sigma (1 - sigma) per sample as a 1-column curvature");
  Eigen::MatrixXd s(n * c, c);
  for (Index i = 0; i < n; ++i) {
    const Eigen::VectorXd p = probabilities.row(i).transpose();
    const std::string row = "row " + std::to_string(i) + " of the probabilities";
    detail::require(p.allFinite(), where, row + " has a NaN or Inf entry");
    detail::require(p.minCoeff() >= -tolerance, where, row + " has a negative entry " + detail::fmt(p.minCoeff()));
    detail::require(std::abs(p.sum() - 1.0) <= tolerance * static_cast<double>(c), where,
                    row + " sums to " + detail::fmt(p.sum()) + ", not 1 (softmax probabilities, not logits?)");
    s.middleRows(i * c, c) = Eigen::MatrixXd(p.asDiagonal()) - p * p.transpose();
  }
  return s;
}

Eigen::MatrixXd curvature_square_roots(const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs,
                                       double tolerance) {
  const std::string where = "curvature";
  detail::require(std::isfinite(tolerance) && tolerance >= 0.0, where,
                  "tolerance must be finite and >= 0, got " + detail::fmt(tolerance));
  const Index n = curvature_samples(curvature, outputs, where);
  const Index c = outputs;
  Eigen::MatrixXd roots(n * c, c);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es;
  for (Index i = 0; i < n; ++i) {
    const Eigen::MatrixXd si = curvature.middleRows(i * c, c);
    const std::string sample = "S_" + std::to_string(i) + " (rows " + std::to_string(i * c) + ".." +
                               std::to_string(i * c + c - 1) + ")";
    detail::require(si.allFinite(), where, sample + " has a NaN or Inf entry");
    const double scale = si.cwiseAbs().maxCoeff();
    detail::require((si - si.transpose()).cwiseAbs().maxCoeff() <= tolerance * scale, where,
                    sample + " is not symmetric (max |S - S^T| = " +
                        detail::fmt((si - si.transpose()).cwiseAbs().maxCoeff()) + ")");
    if (scale == 0.0) {  // a sample the loss does not curve (e.g. a saturated softmax)
      roots.middleRows(i * c, c).setZero();
      continue;
    }
    es.compute(0.5 * (si + si.transpose()));
    const Eigen::VectorXd d = es.eigenvalues();
    detail::require(d.minCoeff() >= -tolerance * std::max(d.maxCoeff(), 0.0), where,
                    sample + " is not positive semidefinite (eigenvalue " + detail::fmt(d.minCoeff()) +
                        "): the linearization needs a convex loss at the point");
    const Eigen::VectorXd sqrt_d = d.cwiseMax(0.0).cwiseSqrt();
    roots.middleRows(i * c, c) = es.eigenvectors() * sqrt_d.asDiagonal() * es.eigenvectors().transpose();
  }
  return roots;
}

Eigen::MatrixXd apply_curvature_to_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                            const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs) {
  const Index n = curvature_samples(curvature, outputs, "curvature");
  detail::require(jacobian.rows() == curvature.rows(), "curvature",
                  "the Jacobian has " + std::to_string(jacobian.rows()) + " rows and the curvature " +
                      std::to_string(curvature.rows()) + " (both n C, sample-major)");
  const Eigen::MatrixXd roots = curvature_square_roots(curvature, outputs);
  Eigen::MatrixXd out(jacobian.rows(), jacobian.cols());
  const Index c = outputs;
  for (Index i = 0; i < n; ++i)
    out.middleRows(i * c, c).noalias() = roots.middleRows(i * c, c) * jacobian.middleRows(i * c, c);
  return out;
}

Eigen::MatrixXd apply_curvature_to_gram(const Eigen::Ref<const Eigen::MatrixXd>& gram,
                                        const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs) {
  const Index n = curvature_samples(curvature, outputs, "curvature");
  detail::require(gram.rows() == curvature.rows() && gram.cols() == curvature.rows(), "curvature",
                  "the Gram is " + shape(gram.rows(), gram.cols()) + " and the curvature has " +
                      std::to_string(curvature.rows()) + " rows (the Gram must be (n C) x (n C))");
  const Eigen::MatrixXd roots = curvature_square_roots(curvature, outputs);
  const Index c = outputs;
  Eigen::MatrixXd left(gram.rows(), gram.cols());  // S^{1/2} K
  for (Index i = 0; i < n; ++i)
    left.middleRows(i * c, c).noalias() = roots.middleRows(i * c, c) * gram.middleRows(i * c, c);
  Eigen::MatrixXd out(gram.rows(), gram.cols());  // (S^{1/2} K) S^{1/2}, S^{1/2} symmetric
  for (Index j = 0; j < n; ++j)
    out.middleCols(j * c, c).noalias() = left.middleCols(j * c, c) * roots.middleRows(j * c, c);
  return out;
}

Eigen::MatrixXd precondition_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                      const Eigen::Ref<const Eigen::VectorXd>& preconditioner) {
  const std::string where = "preconditioner";
  detail::require(preconditioner.size() == jacobian.cols(), where,
                  "it has " + std::to_string(preconditioner.size()) + " entries and the Jacobian " +
                      std::to_string(jacobian.cols()) + " columns (one entry per parameter)");
  for (Index k = 0; k < preconditioner.size(); ++k)
    detail::require(std::isfinite(preconditioner(k)) && preconditioner(k) > 0.0, where,
                    "entry " + std::to_string(k) + " is " + detail::fmt(preconditioner(k)) +
                        " (P = sqrt(v_hat) + eps must be finite and > 0)");
  return jacobian * preconditioner.cwiseSqrt().cwiseInverse().asDiagonal();
}

}  // namespace sgdstab
