#pragma once
/// \file loss_curvature.hpp
/// \brief Losses other than the square loss, and frozen diagonal
/// preconditioners, as transforms of the Jacobian or the Gram
/// (theory/loss_curvature.md; theory/adaptive.md for the preconditioner).
///
/// Per-sample curvature. With a per-sample loss l_i(f) whose Hessian in the
/// outputs at the point is S_i (C x C, symmetric PSD), the per-sample
/// (Gauss-Newton) Hessian is h_i = J_i^T S_i J_i = (S_i^{1/2} J_i)^T (S_i^{1/2} J_i):
/// every routine of the library applies unchanged to the Jacobian
/// S^{1/2} J (S^{1/2} = blockdiag(S_1^{1/2}, ..., S_n^{1/2})) or to the Gram
/// S^{1/2} K S^{1/2}. The square loss of the library's convention is S_i = I;
/// a weighted square loss w_i/2 |f - y|^2 is S_i = w_i I; cross-entropy on
/// softmax probabilities p_i is S_i = diag(p_i) - p_i p_i^T (mean over
/// samples, as torch.nn.CrossEntropyLoss: no factor 1/2 and no 1/C, so the
/// learning rate is torch's). What the threshold means at a point that is
/// not a minimum (cross-entropy has no finite one): theory/loss_curvature.md.
///
/// Curvature matrices are stacked: an (n C) x C matrix whose rows
/// i*C .. i*C+C-1 are S_i, the order of the Jacobian's rows.
///
/// \code
/// Eigen::MatrixXd J = ...;   // (n C) x p at the point
/// Eigen::MatrixXd P = ...;   // n x C softmax probabilities at the point
/// auto g = sgdstab::Geometry::from_jacobian(
///     sgdstab::apply_curvature_to_jacobian(J, sgdstab::softmax_curvature(P), C), C);
/// auto t = sgdstab::stability_threshold(g, /*batch=*/32, sgdstab::Sampling::without_replacement);
/// \endcode
#include <Eigen/Core>

#include "sgdstab/types.hpp"

namespace sgdstab {

/// S_i = diag(p_i) - p_i p_i^T for each row p_i of an n x C matrix of
/// softmax probabilities, stacked ((n C) x C). Rows must be finite, have
/// entries >= -tolerance and sum to 1 within tolerance * C.
/// \throws sgdstab::invalid_argument naming the first bad row, on an empty
///   matrix, or when C < 2 (a single logit is a sigmoid: pass its curvature
///   sigma (1 - sigma) as a 1-column --curvature instead).
Eigen::MatrixXd softmax_curvature(const Eigen::Ref<const Eigen::MatrixXd>& probabilities, double tolerance = 1e-6);

/// The stacked symmetric square roots S_i^{1/2} of stacked curvatures
/// ((n C) x C, rows i*C.. = S_i). Each S_i must be finite, symmetric within
/// tolerance * max|S_i| and PSD down to -tolerance * lambda_max(S_i) (such
/// eigenvalues are taken as 0).
/// \throws sgdstab::invalid_argument naming the sample, or on a shape that
///   is not (n C) x C with n >= 1.
Eigen::MatrixXd curvature_square_roots(const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs,
                                       double tolerance = 1e-6);

/// S^{1/2} J: the Jacobian ((n C) x p) of the loss with curvature S
/// ((n C) x C stacked) in the square loss's form. \throws
/// sgdstab::invalid_argument when the shapes disagree (naming both) or the
/// curvature is invalid (curvature_square_roots).
Eigen::MatrixXd apply_curvature_to_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                            const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs);

/// S^{1/2} K S^{1/2} for a Gram K = J J^T ((n C) x (n C)): the Gram of
/// apply_curvature_to_jacobian. Same checks.
Eigen::MatrixXd apply_curvature_to_gram(const Eigen::Ref<const Eigen::MatrixXd>& gram,
                                        const Eigen::Ref<const Eigen::MatrixXd>& curvature, Index outputs);

/// J P^{-1/2} for a frozen diagonal preconditioner P = diag(preconditioner)
/// (p entries, each finite and > 0; Adam's and RMSProp's sqrt(v_hat) + eps):
/// in the coordinates phi = P^{1/2} theta the preconditioned update
/// theta <- theta - lr P^{-1} g is plain SGD with this Jacobian
/// (theory/adaptive.md). \throws sgdstab::invalid_argument on a length
/// other than J's columns or a bad entry (naming its index).
Eigen::MatrixXd precondition_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                      const Eigen::Ref<const Eigen::VectorXd>& preconditioner);

}  // namespace sgdstab
