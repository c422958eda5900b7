#pragma once
// Internal: the region's use of the shared-subspace solver of family.hpp
// (theory/region.md): the family M(s) of a Geometry, its exact member at
// s = 0, the checks of a region's lists and the assembly of a region from
// solved members. Used by stability_region, the threshold's matrix-free path
// and sgdstab::mpi::region; defined in lib/solvers/region_family.cpp.
#include <Eigen/Core>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/types.hpp"
#include "solvers/family.hpp"

namespace sgdstab::detail {

/// L2 weight decay lambda in the family (theory/weight_decay.md, section 3):
/// the pencil (Q + lambda A + lambda^2 I, A + 2 lambda I) is, with
/// c = alpha + beta, c ((1 - s) P' + s R') where P' = sigma^2 P + tau / c and
/// R' = sigma R sigma + tau / c entrywise, sigma_kl^2 = (d_k + d_l) /
/// (d_k + d_l + 2 lambda), tau_kl = (lambda (d_k + d_l) + lambda^2) /
/// (d_k + d_l + 2 lambda). lambda = 0 is the plain family.
struct FamilyShift {
  double weight_decay = 0.0;  ///< lambda >= 0, in the geometry's units
  double c = 1.0;             ///< alpha + beta of the points solved (1 without and with replacement)
};

/// The family of a geometry's pencil (region.hpp): P and R of its reduced
/// coordinates (shifted for weight decay), solved at every s in (0, 1] by
/// family_top from the start A^{1/2}(I) (implemented in
/// lib/solvers/region_family.cpp).
FamilyResult geometry_family(const Geometry& g, const std::vector<double>& s, const SolverOptions& options,
                             bool want_vectors = false, const FamilyShift& shift = {});
/// g(0) = lambda_max(H) / 2, exactly, with its tangent and vector e_00
/// ((lambda_max(H) + lambda) / 2 with weight decay at c = 1).
FamilyMember geometry_family_at_zero(const Geometry& g, const FamilyShift& shift = {});
/// The same from d and sum_i (h_i)_00^2 = sum_i |Z_i e_0|^4 (a distributed geometry sums its part).
FamilyMember family_at_zero(const Eigen::VectorXd& d, double sum_h00_squared, Index n);

/// The lists of a region: non-empty, no repeats, every batch in 1..n.
/// \throws sgdstab::invalid_argument naming the problem.
void check_region_lists(const std::vector<Sampling>& schemes, const std::vector<Index>& batches, Index n);

/// The distinct s > 0 of a region's points (theory/region.md, section 2).
std::vector<double> region_s_values(const std::vector<Sampling>& schemes, const std::vector<Index>& batches, Index n);

/// A region's tangents, knots, curves, status and message from its solved
/// members (one per s of region_s_values, and s = 0), as theory/region.md
/// section 6 says: eta*(B) = 1 / (c g(s)) with the interval from the
/// member's error bound; the first point that did not converge sets the
/// region's status. out.samples must be set. Used by stability_region and
/// sgdstab::mpi::region.
/// The region's wall time, also on each of its points (made together: the
/// whole call's, solver.hpp).
void set_region_seconds(StabilityRegion& out, double seconds);

/// A threshold from a solved member of the (shifted) family: 1/eta* = c
/// value, the report from the member, and S* = (A + 2 lambda)^{-1/2} y when
/// asked for (threshold.md §6). Defined in lib/solvers/stability.cpp.
ThresholdResult threshold_of_member(const FamilyMember& m, const FamilyResult& fam, double c, Index batch,
                                    Sampling sampling, const Geometry& g, double weight_decay, bool want_direction);

/// stability_region's shared-subspace region, of SGD with weight decay lambda
/// (lambda = 0: plain SGD; lambda > 0 needs c = 1 schemes: without and with
/// replacement; theory/weight_decay.md, section 3). The caller checks lambda
/// and the schemes. Defined in lib/solvers/region.cpp.
StabilityRegion shifted_region(const Geometry& g, const std::vector<Sampling>& schemes,
                               const std::vector<Index>& batches, const SolverOptions& options, double weight_decay);

void assemble_region(StabilityRegion& out, const std::vector<FamilyMember>& members,
                     const std::vector<Sampling>& schemes, const std::vector<Index>& batches);

}  // namespace sgdstab::detail
