#pragma once
// What momentum's threshold search gives the region (internal; theory/momentum.md,
// sections 5 and 7): defined in momentum_threshold.cpp, used by region.cpp.
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::detail {

/// The limit of the mean dynamics (theory/momentum.md, eq. 5-6): 2(1 + beta) / lambda_max
/// (heavy-ball), 2(1 + beta) / ((1 + 2 beta) lambda_max) (Nesterov); with a
/// decoupled decay mu (heavy-ball only, theory/adaptive.md section 5)
/// 2(1 + beta) / (lambda_max + (1 + beta) mu).
double mean_limit(const Momentum& mo, double lambda_max, double decoupled = 0.0);

/// The level b(B) of a scheme's batch size on its class's kappa_0 (b = 0: full batch).
double noise_level(Sampling sampling, Index n, Index batch);

/// A mean dynamics that does not commute with H (Adam's or RMSProp's own L2
/// decay, theory/adaptive.md section 6): the mean's matrix A = H + lambda
/// P^{-1} (preconditioned coordinates) = U diag(eigenvalues) U^T on the whole
/// parameter space (order p), and basis = U^T V (p x r), V the geometry's
/// orthonormal eigenvectors of H (its reduced coordinates).
struct MeanBasis {
  Eigen::VectorXd eigenvalues;
  Eigen::MatrixXd basis;
};

/// The threshold of heavy-ball momentum (or plain SGD at beta 0) whose mean
/// dynamics are `mean`'s (heavy-ball lr units; weight_decay only echoed in
/// the result), every argument but `mean` checked.
MomentumThresholdResult mean_basis_momentum_threshold(const Geometry& g, const MeanBasis& mean, Index batch,
                                                      Sampling sampling, const Momentum& mo, double weight_decay,
                                                      const SolverOptions& options, Index scan_points,
                                                      const char* where);

/// rho of heavy-ball momentum (or plain SGD at beta 0) whose mean dynamics
/// are `mean`'s, on the whole 2p-dimensional state (heavy-ball lr units).
RadiusResult mean_basis_momentum_radius(const Geometry& g, const MeanBasis& mean, double lr, Index batch,
                                        Sampling sampling, const Momentum& mo, const SolverOptions& options,
                                        const char* where);

/// Every (scheme, batch) of a region: one kappa_0 per noise class, its levels
/// solved in decreasing b (increasing eta*), each from the evaluations of the
/// ones before (theory/momentum.md, section 7). [scheme][batch], unchecked lists.
/// weight_decay: L2 decay lambda (section 8), unchecked; decoupled: the
/// decoupled decay mu of theta <- (1 - lr mu) theta - u' (heavy-ball only;
/// theory/adaptive.md, section 5), unchecked.
std::vector<std::vector<MomentumThresholdResult>> momentum_levels(const Geometry& g,
                                                                  const std::vector<Sampling>& schemes,
                                                                  const std::vector<Index>& batches,
                                                                  const Momentum& mo, const SolverOptions& options,
                                                                  double weight_decay = 0.0, double decoupled = 0.0,
                                                                  const MeanBasis* mean = nullptr);

/// Heavy-ball momentum with L2 decay lambda and decoupled decay mu (both in
/// the heavy-ball lr's units, theory/adaptive.md section 5): the threshold,
/// the curve and the radius, untimed, every argument checked (`where` names
/// the caller in errors). mu > 0 with Nesterov is an invalid_argument.
MomentumThresholdResult decayed_momentum_threshold(const Geometry& g, Index batch, Sampling sampling,
                                                   const Momentum& mo, double weight_decay, double decoupled,
                                                   const SolverOptions& options, Index scan_points, const char* where);
std::vector<MomentumThresholdResult> decayed_momentum_curve(const Geometry& g, const std::vector<Index>& batches,
                                                            Sampling sampling, const Momentum& mo,
                                                            double weight_decay, double decoupled,
                                                            const SolverOptions& options, const char* where);
/// The momentum region with L2 decay lambda and decoupled decay mu (heavy-ball
/// lr units; region.cpp), lists checked, unitless in Adam's sense. With
/// `mean` the mean dynamics are its (weight_decay echoed; eta_gd = eta_mean
/// from its largest eigenvalue).
StabilityRegion decayed_momentum_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                        const std::vector<Index>& batches, const Momentum& mo, double weight_decay,
                                        double decoupled, const SolverOptions& options,
                                        const MeanBasis* mean = nullptr);
/// The kernel G_eta of the mean dynamics (theory/momentum.md, eq. 8) on the
/// eigenvalues d (with d + lambda for L2 decay), decoupled mu: G_ij = eta^2
/// [S_ij]_11, S_ij - m_i S_ij m_j^T = e e^T. False if an entry is not > 0.
bool momentum_mean_kernel(const Eigen::VectorXd& d, double eta, const Momentum& mo, double decoupled,
                          Eigen::MatrixXd& g);
RadiusResult decayed_momentum_radius(const Geometry& g, double lr, Index batch, Sampling sampling,
                                     const Momentum& mo, double weight_decay, double decoupled,
                                     const SolverOptions& options, const char* where);

}  // namespace sgdstab::detail
