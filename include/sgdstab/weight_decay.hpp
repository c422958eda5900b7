#pragma once
/// \file weight_decay.hpp
/// \brief SGD with L2 weight decay: the exact threshold eta*(B), the curve
/// B -> eta*(B), the region and the spectral radius, for plain SGD
/// (theory/weight_decay.md) and with momentum (weight_decay_momentum_*,
/// theory/momentum.md section 8).
///
/// The update theta <- theta - lr (g_B(theta) + lambda theta) (PyTorch's
/// torch.optim.SGD(weight_decay=lambda) with the library's loss convention,
/// 1/2 and mean over samples; one lambda theta per step, whatever the batch
/// size, in every sampling scheme), linearized at an interpolating minimum,
/// moves deviations by A_B = (1 - lr lambda) I - lr H_B. On range(H) its
/// second-moment map is mean-square stable iff lr <= eta*(B, lambda) with
///   eta* = 1 / lambda_max of the pencil (Q + lambda A + lambda^2 I, A + 2 lambda I)
/// (A, Q as in stability.hpp; theory/weight_decay.md, eq. 3), and on the
/// complement of range(H) it moves by (1 - lr lambda)^2, < 1 for
/// lr lambda < 2 (which lr <= eta* implies: eta* <= 2 / lambda).
/// lambda = 0 is stability_threshold; at B = n without replacement (GD)
/// eta* = 2 / (lambda_max(H) + lambda), lower than without weight decay;
/// at small B weight decay can raise eta* instead (theory/weight_decay.md,
/// section 4: it is not monotone in lambda in general).
///
/// The minimum is that of the loss without the penalty (an interpolating
/// minimum); with lambda > 0 it is not a fixed point of the update (the
/// drift -lr lambda theta*), which moves the mean and, with the sampling
/// noise it adds, the fluctuations, but not this threshold: the threshold is
/// that of the homogeneous linear map (theory/weight_decay.md, section 5).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, /*outputs=*/1);
/// auto res = sgdstab::weight_decay_threshold(g, /*batch=*/8, sgdstab::Sampling::with_replacement, /*lambda=*/1e-3);
/// std::cout << "eta* = " << res.eta_star << "\n";
/// \endcode
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab {

/// eta*(B) of SGD with L2 weight decay lambda (same result type and
/// provenance as stability_threshold; direction on request is the pencil's
/// top eigenvector S*, r x r, reduced coordinates).
/// \throws sgdstab::invalid_argument unless 1 <= batch <= n and lambda >= 0 is
///   finite; sgdstab::resource_error when it would not fit in memory.
ThresholdResult weight_decay_threshold(const Geometry& geometry, Index batch, Sampling sampling, double weight_decay,
                                       const SolverOptions& options = {});

/// eta*(B, lambda) for each B: one shared subspace without or with
/// replacement (their weight-decay pencils form one family), one solve per B
/// for Bernoulli sampling.
std::vector<ThresholdResult> weight_decay_threshold_curve(const Geometry& geometry, const std::vector<Index>& batches,
                                                          Sampling sampling, double weight_decay,
                                                          const SolverOptions& options = {});

/// The region (region.hpp) of SGD with weight decay lambda: without and with
/// replacement share one family (c = 1), so the whole region is one shared
/// subspace, with the certified intervals, tangents and band() of the plain
/// region (theory/weight_decay.md, section 3). lambda = 0 is stability_region.
/// \throws sgdstab::invalid_argument for Bernoulli sampling with lambda > 0
///   (its c depends on B: use weight_decay_threshold_curve), a bad lambda, or
///   stability_region's errors.
StabilityRegion weight_decay_region(const Geometry& geometry, const std::vector<Sampling>& schemes,
                                    const std::vector<Index>& batches, double weight_decay,
                                    const SolverOptions& options = {});

/// rho of the second-moment map on range(H) at learning rate lr with weight
/// decay lambda: T(S) = E[A_B S A_B], A_B = (1 - lr lambda) I - lr H_B
/// (self-adjoint and positive, so rho is its largest eigenvalue).
/// \throws sgdstab::invalid_argument unless lr > 0 and lambda >= 0 are finite
///   and 1 <= batch <= n.
RadiusResult weight_decay_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                          double weight_decay, const SolverOptions& options = {});

/// Momentum SGD with L2 weight decay lambda, as torch.optim.SGD(momentum=beta,
/// nesterov=..., weight_decay=lambda) runs it: the gradient g + lambda theta
/// enters the momentum buffer, so H_xi -> H_xi + lambda I in the momentum
/// map (theory/momentum.md, section 8). The noise C(X) = E[(H_xi - H) X
/// (H_xi - H)] is unchanged; the mean dynamics see d_i + lambda on every
/// eigen-direction of H, so eta* is momentum_threshold's search with that
/// kernel, eta_mean = 2(1 + beta) / (lambda_max + lambda) (heavy-ball), and
/// the directions outside range(H) contract (they are stable below
/// eta_mean). lambda = 0 is momentum_threshold; beta = 0 is
/// weight_decay_threshold's eta*.
/// \throws sgdstab::invalid_argument unless 1 <= batch <= n, lambda >= 0 is
///   finite and the momentum is valid; sgdstab::resource_error when it would
///   not fit in memory.
MomentumThresholdResult weight_decay_momentum_threshold(const Geometry& geometry, Index batch, Sampling sampling,
                                                        Momentum momentum, double weight_decay,
                                                        const SolverOptions& options = {}, Index scan_points = 0);

/// weight_decay_momentum_threshold at each batch size, on one kappa_0 per
/// noise class (as momentum_threshold_curve).
std::vector<MomentumThresholdResult> weight_decay_momentum_threshold_curve(const Geometry& geometry,
                                                                           const std::vector<Index>& batches,
                                                                           Sampling sampling, Momentum momentum,
                                                                           double weight_decay,
                                                                           const SolverOptions& options = {});

/// The momentum region (stability_region's momentum overload, region.hpp)
/// with L2 weight decay lambda: every scheme, Bernoulli included; eta_gd =
/// 2 / (lambda_max + lambda), eta_mean as above. lambda = 0 is the momentum
/// region; beta = 0 is refused (use weight_decay_region).
StabilityRegion weight_decay_momentum_region(const Geometry& geometry, const std::vector<Sampling>& schemes,
                                             const std::vector<Index>& batches, Momentum momentum,
                                             double weight_decay, const SolverOptions& options = {});

/// rho of momentum SGD's second-moment map on range(H) with weight decay
/// lambda (momentum_spectral_radius with H_xi + lambda I).
RadiusResult weight_decay_momentum_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                                   Momentum momentum, double weight_decay,
                                                   const SolverOptions& options = {});

}  // namespace sgdstab
