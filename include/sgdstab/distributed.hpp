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
/// The geometry itself is distributed (DistributedGeometry): each rank holds
/// its samples' rows of the reduced factor Z and the (replicated) eigenvalues
/// d of H. It comes from a Gram whose rows are spread over the ranks
/// (reduce_gram: ScaLAPACK's pdsyevd on a 2-D block-cyclic grid), from a
/// Jacobian's rows (gram_rows_of_jacobian), from a .npy file each rank reads
/// its rows of (read_rows), or from a replicated Geometry (distribute).
///
/// Every function is collective over `comm`: call it on every rank with the
/// same arguments. Requires PETSc and SLEPc to be initialized
/// (SlepcInitialize) by the caller.
///
/// \code
/// SlepcInitialize(&argc, &argv, nullptr, nullptr);
/// auto rows = sgdstab::mpi::read_rows(PETSC_COMM_WORLD, "gram.npy", 2);   // this rank's rows of K
/// auto g = sgdstab::mpi::reduce_gram(PETSC_COMM_WORLD, rows, 2);
/// auto t = sgdstab::mpi::threshold(PETSC_COMM_WORLD, g, 8, sgdstab::Sampling::with_replacement);
/// if (rank == 0) std::cout << t.eta_star << " " << t.times.communication_seconds << "\n";
///                                    // eta*: the same on every rank; times: this rank's
/// SlepcFinalize();
/// \endcode
#include <mpi.h>

#include <Eigen/Core>
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::mpi {

/// The samples of rank k of P: [k q, min((k + 1) q, n)), q = ceil(n / P)
/// (the row blocks of the Gram and of Z are these samples' c rows each).
struct SampleSlice {
  Index first = 0, count = 0;
};
SampleSlice sample_slice(Index samples, int ranks, int rank);

/// A Geometry spread over the ranks of a communicator: the eigenvalues d of H
/// (descending, on every rank) and this rank's rows of the factor Z
/// (geometry.hpp: h_i = Z_i^T Z_i). Built by reduce_gram or distribute.
struct DistributedGeometry {
  Index samples = 0, outputs = 1, params = 0;
  Eigen::VectorXd hessian_eigenvalues;  ///< d, descending (replicated)
  SampleSlice slice;                    ///< this rank's samples
  Eigen::MatrixXd factor_rows;          ///< (slice.count c) x r: rows slice.first c .. of Z
  double largest_discarded = 0.0;       ///< largest discarded Gram eigenvalue
  double reduction_seconds = 0.0;       ///< wall time of the distributed eigendecomposition (0: none)
  Index rank() const { return hessian_eigenvalues.size(); }
  double lambda_max() const { return hessian_eigenvalues(0); }
  double hessian_trace() const { return hessian_eigenvalues.sum(); }
  double hessian_frobenius() const {
    const double top = hessian_eigenvalues(0);
    return top * (hessian_eigenvalues / top).norm();
  }
  Index params_or_zero() const { return params; }
};

/// This rank's slice of a replicated Geometry (no communication).
DistributedGeometry distribute(MPI_Comm comm, const Geometry& geometry);

/// This rank's rows (its samples' c rows each, sample_slice) of the matrix
/// in `path`, which has `total_rows` rows (n c; every rank passes the same).
/// A .npy file is read in place (only these rows' bytes: the input is read
/// once over all ranks); a CSV file is read whole by each rank and sliced.
/// \throws sgdstab::io_error as read_matrix (on the ranks that see it: the
///   header and size checks are the same on every rank).
Eigen::MatrixXd read_rows(MPI_Comm comm, const std::string& path, Index outputs);

/// This rank's rows of K = J J^T from this rank's rows of J (the row blocks
/// of J are passed round the ranks by MPI_Bcast, one block at a time).
/// \throws sgdstab::invalid_argument on NaN/Inf or ragged column counts.
Eigen::MatrixXd gram_rows_of_jacobian(MPI_Comm comm, const Eigen::MatrixXd& jacobian_rows, Index outputs);

/// The reduction of Geometry::from_gram (its checks, rank cut-off and
/// options; theory/reduction.md) on a Gram whose rows are spread over the
/// ranks as sample_slice says: ScaLAPACK pdsyevd on a near-square process
/// grid (block-cyclic, 64 x 64 blocks, redistributed by pdgemr2d), the
/// eigenvectors brought back to the ranks' rows (theory/distributed.md,
/// section 5). The memory each rank needs is checked before allocating.
/// \throws sgdstab::invalid_argument as Geometry::from_gram (on every rank),
///   and also for entries beyond 2^{+-512} (the serial reduction rescales those).
/// \throws sgdstab::numerical_error when ScaLAPACK reports a failure.
DistributedGeometry reduce_gram(MPI_Comm comm, const Eigen::MatrixXd& gram_rows, Index outputs,
                                const ReductionOptions& options = {});

/// Bytes one rank needs for reduce_gram of an N x N Gram on `ranks` ranks.
double reduction_bytes_per_rank(Index gram_size, int ranks);

/// Where the applications' time went on this rank, summed over a solve
/// (theory/distributed.md, section 6): the collectives (MPI_Allgatherv +
/// MPI_Reduce_scatter, including the wait for the slowest rank), the
/// products with the rank's rows of Z (4 n_p C r^2 flops: they shrink with
/// P), and the elementwise work on the r x r matrix (unpack, pack: O(r^2) on
/// every rank, whatever P).
struct ApplicationTimes {
  Index applications = 0;
  double communication_seconds = 0.0, product_seconds = 0.0, elementwise_seconds = 0.0;
  double total_seconds() const { return communication_seconds + product_seconds + elementwise_seconds; }
  ApplicationTimes& operator+=(const ApplicationTimes& o) {
    applications += o.applications;
    communication_seconds += o.communication_seconds;
    product_seconds += o.product_seconds;
    elementwise_seconds += o.elementwise_seconds;
    return *this;
  }
};

/// A serial result (ThresholdResult, RadiusResult, StabilityRegion) with
/// where this rank's application time went in the call that made it.
template <class R>
struct Timed : R {
  ApplicationTimes times;
};

/// eta*(B) by SLEPc's Krylov-Schur on the distributed pencil. SolverOptions:
/// tolerance (SLEPc's relative residual tolerance), max_iterations (its
/// restarts), subspace_dimension (its ncv; 0: SLEPc's default). The result's
/// report says whether SLEPc converged (status), how many applications it
/// made (matvecs) and its relative error estimate (residual).
/// \throws sgdstab::invalid_argument on a bad batch or options (on every rank).
Timed<ThresholdResult> threshold(MPI_Comm comm, const DistributedGeometry& geometry, Index batch,
                                 Sampling sampling, const SolverOptions& options = {});
/// The same on a replicated Geometry (its slice on each rank).
Timed<ThresholdResult> threshold(MPI_Comm comm, const Geometry& geometry, Index batch, Sampling sampling,
                                 const SolverOptions& options = {});

/// rho(T) at (lr, B): the largest eigenvalue modulus of the distributed
/// transition map (SLEPc, largest magnitude).
Timed<RadiusResult> radius(MPI_Comm comm, const DistributedGeometry& geometry, double lr, Index batch,
                           Sampling sampling, const SolverOptions& options = {});
Timed<RadiusResult> radius(MPI_Comm comm, const Geometry& geometry, double lr, Index batch, Sampling sampling,
                           const SolverOptions& options = {});

/// eta*(B) for every scheme and batch size (the serial stability_region's
/// lists and checks), each point by `threshold` on the distributed pencil,
/// points of equal s = beta / (alpha + beta) solved once (the pencil is
/// (alpha + beta) times one operator of s, theory/region.md). Each point's
/// interval: eta_high = 1 / ((alpha + beta) theta) from the Ritz value theta
/// (below lambda_max), eta_low from theta (1 + relative residual) (for a
/// symmetric operator the residual bounds the distance to the spectrum).
/// Each solved s also gives a tangent (the Rayleigh quotient's line through
/// the Ritz vector) and a knot, so band() bounds eta* at batch sizes not
/// computed as for the serial region. matvecs: all applications.
Timed<StabilityRegion> region(MPI_Comm comm, const DistributedGeometry& geometry,
                              const std::vector<Sampling>& schemes, const std::vector<Index>& batches,
                              const SolverOptions& options = {});
Timed<StabilityRegion> region(MPI_Comm comm, const Geometry& geometry, const std::vector<Sampling>& schemes,
                              const std::vector<Index>& batches, const SolverOptions& options = {});

/// Bytes one rank holds for an operator of this geometry on `ranks` ranks
/// (two r x r work matrices, two packed vectors, its rows of Z with three
/// work copies, and its slice of the Krylov basis): what the functions above check against
/// options.memory_limit_bytes before allocating.
double bytes_per_rank(const DistributedGeometry& geometry, int ranks, const SolverOptions& options = {});

}  // namespace sgdstab::mpi
