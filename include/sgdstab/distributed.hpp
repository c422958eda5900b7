#pragma once
/// \file distributed.hpp
/// \brief eta* and rho on SLEPc/PETSc over MPI: the optional component
/// sgdstab::mpi (CMake SGDSTAB_WITH_MPI; theory/distributed.md).
///
/// The eigenproblems of stability.hpp (the pencil A^{-1/2} Q A^{-1/2}, whose
/// largest eigenvalue is 1 / eta*, and the transition map T, whose largest
/// eigenvalue modulus is rho) as SLEPc shell operators on PETSc vectors
/// distributed over the ranks of a communicator: each rank owns a slice of
/// the packed symmetric coordinates (moment_operator.hpp) and a slice of
/// the samples. One application gathers the vector (MPI_Allgatherv), applies
/// D for the rank's own samples and sums the parts onto their owners
/// (MPI_Reduce_scatter); the diagonal terms are local.
///
/// First step (issue #17): every rank holds the whole Geometry (the
/// reduction of the Gram is computed on each rank, serially); the
/// distributed reduction and scattered input follow.
///
/// Every function is collective over `comm`: call it on every rank with the
/// same arguments. Requires PETSc and SLEPc to be initialized
/// (SlepcInitialize) by the caller.
///
/// \code
/// SlepcInitialize(&argc, &argv, nullptr, nullptr);
/// auto g = sgdstab::Geometry::from_gram(K, 2);      // on every rank
/// auto t = sgdstab::mpi::threshold(PETSC_COMM_WORLD, g, 8, sgdstab::Sampling::with_replacement);
/// if (rank == 0) std::cout << t.eta_star << "\n";    // the same on every rank
/// SlepcFinalize();
/// \endcode
#include <mpi.h>

#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::mpi {

/// eta*(B) by SLEPc's Krylov-Schur on the distributed pencil. SolverOptions:
/// tolerance (SLEPc's relative residual tolerance), max_iterations (its
/// restarts), subspace_dimension (its ncv; 0: SLEPc's default). The result's
/// report says whether SLEPc converged (status), how many applications it
/// made (matvecs) and its relative error estimate (residual).
/// \throws sgdstab::invalid_argument on a bad batch or options (on every rank).
ThresholdResult threshold(MPI_Comm comm, const Geometry& geometry, Index batch, Sampling sampling,
                          const SolverOptions& options = {});

/// rho(T) at (lr, B): the largest eigenvalue modulus of the distributed
/// transition map (SLEPc, largest magnitude).
RadiusResult radius(MPI_Comm comm, const Geometry& geometry, double lr, Index batch, Sampling sampling,
                    const SolverOptions& options = {});

/// eta*(B) for every scheme and batch size (the serial stability_region's
/// lists and checks), each point by `threshold` on the distributed pencil,
/// points of equal s = beta / (alpha + beta) solved once (the pencil is
/// (alpha + beta) times one operator of s, theory/region.md). Each point's
/// interval: eta_high = 1 / ((alpha + beta) theta) from the Ritz value theta
/// (below lambda_max), eta_low from theta (1 + relative residual) (for a
/// symmetric operator the residual bounds the distance to the spectrum).
/// The region's band and tangents are those of the points' intervals only
/// (no shared subspace: tangents and knots stay empty, band() of such a
/// region bounds only computed batch sizes). matvecs: all applications.
StabilityRegion region(MPI_Comm comm, const Geometry& geometry, const std::vector<Sampling>& schemes,
                       const std::vector<Index>& batches, const SolverOptions& options = {});

/// Bytes one rank holds for an operator of this geometry on `ranks` ranks
/// (the replicated geometry, three r x r work matrices, its slices of the
/// samples and of the Krylov basis): what the functions above check against
/// options.memory_limit_bytes before allocating.
double bytes_per_rank(const Geometry& geometry, int ranks, const SolverOptions& options = {});

}  // namespace sgdstab::mpi
