#pragma once
// What momentum's threshold search gives the region (internal; theory/momentum.md,
// sections 5 and 7): defined in momentum_threshold.cpp, used by region.cpp.
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::detail {

/// The limit of the mean dynamics (theory/momentum.md, eq. 5-6): 2(1 + beta) / lambda_max
/// (heavy-ball), 2(1 + beta) / ((1 + 2 beta) lambda_max) (Nesterov).
double mean_limit(const Momentum& mo, double lambda_max);

/// The level b(B) of a scheme's batch size on its class's kappa_0 (b = 0: full batch).
double noise_level(Sampling sampling, Index n, Index batch);

/// Every (scheme, batch) of a region: one kappa_0 per noise class, its levels
/// solved in decreasing b (increasing eta*), each from the evaluations of the
/// ones before (theory/momentum.md, section 7). [scheme][batch], unchecked lists.
/// weight_decay: L2 decay lambda (section 8), unchecked.
std::vector<std::vector<MomentumThresholdResult>> momentum_levels(const Geometry& g,
                                                                  const std::vector<Sampling>& schemes,
                                                                  const std::vector<Index>& batches,
                                                                  const Momentum& mo, const SolverOptions& options,
                                                                  double weight_decay = 0.0);

}  // namespace sgdstab::detail
