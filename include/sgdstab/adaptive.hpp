#pragma once
/// \file adaptive.hpp
/// \brief RMSProp and Adam late in training, with the second-moment state
/// frozen (theory/adaptive.md): the exact mean-square threshold, curve and
/// spectral radius in the optimizer's own learning rate.
///
/// With P = diag(sqrt(v_hat) + eps) frozen and the bias corrections equal to
/// 1 (late in training), torch.optim runs, in the library's loss convention
/// (g the mini-batch gradient of 1/2 |f - y|^2 averaged over the batch):
///   RMSProp  theta <- theta - lr P^{-1} g
///   Adam     m <- beta1 m + (1 - beta1) g,   theta <- theta - lr P^{-1} m.
/// In phi = P^{1/2} theta they are SGD and momentum SGD on the Jacobian
/// J P^{-1/2} (precondition_jacobian, loss_curvature.hpp): RMSProp is plain
/// SGD at lr, and Adam is heavy-ball momentum SGD (PyTorch's convention,
/// momentum.hpp) with beta = beta1 at the learning rate lr (1 - beta1)
/// (v = m / (1 - beta1)). So every routine here takes the geometry of the
/// preconditioned Jacobian and answers in Adam's lr:
///   eta*_Adam(B) = eta*_heavy-ball(B; beta1) / (1 - beta1),
/// and in the full-batch limit eta*_Adam = (2 + 2 beta1) / ((1 - beta1)
/// lambda_max(P^{-1} H)) (Cohen et al. 2022's 38/lr plateau at beta1 = 0.9).
/// beta1 = 0 is RMSProp (and, with P = I, plain SGD). AdamW without weight
/// decay is Adam.
///
/// AdamW (adamw_*, theory/adaptive.md section 5): torch.optim.AdamW's
/// decoupled decay theta <- (1 - lr wd) theta before the Adam step. In phi
/// it is the same scalar shrink, so AdamW is heavy-ball momentum whose
/// position step is delta <- (1 - lr wd) delta - u': a mean transition per
/// eigen-direction [[1 - eta (d + mu), -beta1], [eta d, beta1]] with eta =
/// lr (1 - beta1), mu = wd / (1 - beta1), the noise unchanged. Full batch:
///   eta*_AdamW = 2 (1 + beta1) / ((1 - beta1) lambda_max(P^{-1} H) + (1 + beta1) wd).
/// Adam's and RMSProp's own weight_decay (L2: g + wd theta, then P^{-1})
/// shifts P^{-1/2} H P^{-1/2} by wd P^{-1}, which does not commute with it:
/// the reduced r x r coordinates do not hold it, and adam_l2_threshold works
/// on the whole parameter space from the Jacobian (theory/adaptive.md
/// section 6; O(p^3) once and O(p^2 r) per step: p up to a few thousand).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), C);
/// auto t = sgdstab::adam_threshold(g, /*batch=*/32, sgdstab::Sampling::without_replacement, /*beta1=*/0.9);
/// // stable for lr < t.eta_star (Adam's lr)
/// \endcode
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// The heavy-ball learning rate of Adam at lr: lr (1 - beta1).
/// \throws sgdstab::invalid_argument unless 0 <= beta1 < 1.
double adam_heavy_ball_lr(double lr, double beta1);

/// eta* of Adam with a frozen preconditioner (in Adam's lr): momentum_threshold
/// on the preconditioned geometry with beta = beta1, every learning rate of
/// the result (eta_star, eta_mean, eta_low, eta_high, evaluations,
/// stable_intervals) divided by 1 - beta1. Same throws as momentum_threshold.
MomentumThresholdResult adam_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                       const SolverOptions& options = {}, Index scan_points = 0);

/// adam_threshold at each batch size (momentum_threshold_curve, converted).
std::vector<MomentumThresholdResult> adam_threshold_curve(const Geometry& preconditioned,
                                                          const std::vector<Index>& batches, Sampling sampling,
                                                          double beta1, const SolverOptions& options = {});

/// rho of Adam's second-moment map at Adam's lr: momentum_spectral_radius at
/// lr (1 - beta1) with beta = beta1; the result's lr is Adam's.
RadiusResult adam_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                  double beta1, const SolverOptions& options = {});

/// eta* of AdamW with a frozen preconditioner, in AdamW's lr, with its
/// decoupled weight decay wd (torch.optim.AdamW's weight_decay converted so
/// that lr wd, the fraction removed per step, is torch's: wd_lib =
/// wd_torch lr_torch / lr_lib, e.g. wd C / 2 from MSELoss with the bias
/// corrections at 1; theory/adaptive.md section 5). The result's weight_decay is wd and decoupled_weight_decay is
/// true; eta_mean = 2 (1 + beta1) / ((1 - beta1) lambda_max + (1 + beta1) wd).
/// wd = 0 is adam_threshold; beta1 = 0 is weight_decay_threshold's eta* at
/// lambda = wd (RMSProp with decoupled decay is SGD with L2 decay in phi).
/// \throws sgdstab::invalid_argument unless 0 <= beta1 < 1, wd >= 0 is
///   finite and 1 <= batch <= n; momentum_threshold's other throws.
MomentumThresholdResult adamw_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                        double weight_decay, const SolverOptions& options = {},
                                        Index scan_points = 0);

/// adamw_threshold at each batch size (one kappa_0 per noise class, as
/// momentum_threshold_curve).
std::vector<MomentumThresholdResult> adamw_threshold_curve(const Geometry& preconditioned,
                                                           const std::vector<Index>& batches, Sampling sampling,
                                                           double beta1, double weight_decay,
                                                           const SolverOptions& options = {});

/// rho of AdamW's second-moment map on range(H) at AdamW's lr (the momentum
/// map at lr (1 - beta1) with the decoupled decay); the result's lr is AdamW's.
RadiusResult adamw_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                   double beta1, double weight_decay, const SolverOptions& options = {});

/// eta* of Adam (beta1 > 0) or RMSProp (beta1 = 0) with its own L2 weight
/// decay wd (torch.optim.Adam/RMSprop's weight_decay: g + wd theta before the
/// division by P; in the library's loss convention, theory/adaptive.md
/// section 6), with the preconditioner P = sqrt(v_hat) + eps frozen, in the
/// optimizer's lr. In phi = P^{1/2} theta it is heavy-ball momentum at lr (1 -
/// beta1) whose mean matrix H~ + wd P^{-1} (H~ = P^{-1/2} H P^{-1/2}) does not
/// commute with the noise's H~: every direction of the parameter space
/// contracts in the mean, so stability is that of the whole 2p-dimensional
/// state. jacobian: the stacked per-sample Jacobian ((n C) x p, not yet
/// preconditioned); preconditioner: P's p diagonal entries. The result's
/// weight_decay is wd (decoupled_weight_decay false); eta_mean =
/// 2 (1 + beta1) / ((1 - beta1) lambda_max(H~ + wd P^{-1})). wd = 0 is
/// adam_threshold on the preconditioned geometry (beta1 = 0: momentum 0,
/// i.e. plain SGD on it); P = 1 (all ones) is weight_decay_momentum_threshold
/// at lr (1 - beta1).
/// `reduction` is the Geometry's, for J P^{-1/2}.
/// Cost: one p x p eigendecomposition, then O(p^2 r) per application on
/// p (p + 1) / 2-dimensional iterates.
/// \throws sgdstab::invalid_argument unless 0 <= beta1 < 1, wd >= 0 is
///   finite, P has p finite entries > 0, and 1 <= batch <= n; the geometry's
///   throws on the Jacobian; sgdstab::resource_error when the p x p work would
///   not fit in memory.
MomentumThresholdResult adam_l2_threshold(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                          const Eigen::Ref<const Eigen::VectorXd>& preconditioner, Index batch,
                                          Sampling sampling, double beta1, double weight_decay,
                                          const SolverOptions& options = {}, Index scan_points = 0,
                                          const ReductionOptions& reduction = {});

/// adam_l2_threshold at each batch size (one kappa_0 per noise class, shared).
std::vector<MomentumThresholdResult> adam_l2_threshold_curve(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                                             Index outputs,
                                                             const Eigen::Ref<const Eigen::VectorXd>& preconditioner,
                                                             const std::vector<Index>& batches, Sampling sampling,
                                                             double beta1, double weight_decay,
                                                             const SolverOptions& options = {},
                                                             const ReductionOptions& reduction = {});

/// rho of Adam's (beta1 > 0) or RMSProp's (beta1 = 0) second-moment map
/// with its own L2 decay at the optimizer's lr, on the whole 2p-dimensional
/// state (theory/adaptive.md section 6): stable iff rho <= 1. The result's lr
/// is the optimizer's. wd = 0 is adam_spectral_radius on the preconditioned
/// geometry (range(H~) only there). Same throws as adam_l2_threshold, and
/// lr must be finite and > 0.
RadiusResult adam_l2_spectral_radius(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                     const Eigen::Ref<const Eigen::VectorXd>& preconditioner, double lr, Index batch,
                                     Sampling sampling, double beta1, double weight_decay,
                                     const SolverOptions& options = {}, const ReductionOptions& reduction = {});

/// The stability region of Adam (weight_decay = 0) or AdamW (its decoupled
/// decay wd > 0) with a frozen preconditioner: every scheme and batch size
/// from one kappa_0 per noise class (the momentum region, theory/momentum.md
/// section 7, with adamw's mean kernel), every learning rate in Adam's lr:
/// the points, eta_mean = eta_gd (the full-batch limit of adamw_threshold)
/// and band(). The result has adam = true, momentum.beta = beta1,
/// weight_decay = wd and decoupled_weight_decay = (wd > 0).
/// \throws sgdstab::invalid_argument unless 0 < beta1 < 1 (beta1 = 0 is
///   RMSProp: stability_region or weight_decay_region on the preconditioned
///   geometry), wd >= 0 is finite, and the lists are valid (stability_region's).
StabilityRegion adam_region(const Geometry& preconditioned, const std::vector<Sampling>& schemes,
                            const std::vector<Index>& batches, double beta1, double weight_decay = 0.0,
                            const SolverOptions& options = {});

/// The stability region of Adam (beta1 > 0) or RMSProp (beta1 = 0) with
/// their own L2 decay wd (adam_l2_threshold's map, theory/adaptive.md
/// section 6): every scheme and batch size from one kappa_0 per noise class
/// and one p x p eigendecomposition, every learning rate in the optimizer's
/// lr. With wd > 0 the result has adam = true (also for RMSProp), momentum.beta = beta1,
/// weight_decay = wd, decoupled_weight_decay = false, eta_gd = eta_mean =
/// 2 (1 + beta1) / ((1 - beta1) lambda_max(H~ + wd P^{-1})), lambda_max that
/// of H~; band() is momentum's (eta*(B) is non-decreasing in B). Each point
/// equals adam_l2_threshold_curve's for its scheme. wd = 0 is adam_region
/// on the preconditioned geometry (beta1 = 0: stability_region there, a
/// plain SGD region).
/// \throws as adam_l2_threshold_curve, and stability_region's list checks.
StabilityRegion adam_l2_region(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                               const Eigen::Ref<const Eigen::VectorXd>& preconditioner,
                               const std::vector<Sampling>& schemes, const std::vector<Index>& batches, double beta1,
                               double weight_decay, const SolverOptions& options = {},
                               const ReductionOptions& reduction = {});

}  // namespace sgdstab
