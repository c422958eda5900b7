// The distributed operator and its top eigenvalue on SLEPc
// (theory/distributed.md, sections 2-3).
#include "distributed/operator.hpp"

#include <slepceps.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <iostream>
#include <limits>
#include <string>

#include "distributed/comm.hpp"
#include "foundations/interrupt_detail.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::mpi {
namespace internal {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {
const double kSqrt2 = std::sqrt(2.0);
}  // namespace

DistributedOperator::DistributedOperator(MPI_Comm comm, const DistributedGeometry& g, SamplingFactors f, bool pencil,
                                         double lr)
    : comm_(comm), r_(g.rank()), c_(g.outputs), n_(g.samples), m_(packed_size(g.rank())), pencil_(pencil),
      zp_(g.factor_rows) {
  const int size = comm_size(comm), rank = comm_rank(comm);
  if (m_ > static_cast<Index>(std::numeric_limits<int>::max()) ||
      m_ > static_cast<Index>(std::numeric_limits<PetscInt>::max()))
    throw resource_error("the packed dimension r (r + 1) / 2 = " + std::to_string(m_) +
                         " exceeds the int counts of MPI collectives and this PETSc's PetscInt");
  // Packed coordinates: PETSc's split (the first m mod P ranks get one more).
  PetscInt local = PETSC_DECIDE, global = static_cast<PetscInt>(m_);
  PetscSplitOwnership(comm, &local, &global);
  local_ = static_cast<Index>(local);
  counts_.resize(static_cast<std::size_t>(size));
  const int mine = static_cast<int>(local_);
  MPI_Allgather(&mine, 1, MPI_INT, counts_.data(), 1, MPI_INT, comm);
  displs_.assign(static_cast<std::size_t>(size), 0);
  for (int k = 1; k < size; ++k) displs_[k] = displs_[k - 1] + counts_[k - 1];
  lo_ = displs_[static_cast<std::size_t>(rank)];
  // The diagonal coefficients of this rank's slice.
  const VectorXd& d = g.hessian_eigenvalues;
  diag_.resize(local_);
  p_.resize(local_);
  weight_.resize(local_);
  Index idx = 0, out = 0;
  for (Index l = 0; l < r_ && out < local_; ++l)
    for (Index k = l; k < r_; ++k, ++idx) {
      if (idx < lo_) continue;
      if (out >= local_) break;
      const double dk = d(k), dl = d(l);
      p_(out) = dk * dl / (dk + dl);
      if (pencil) {
        const double w = 1.0 / std::sqrt(dk + dl);
        diag_(out) = w * f.alpha * dk * dl * w;
        weight_(out) = w * f.beta / static_cast<double>(n_);
      } else {
        diag_(out) = 1.0 - lr * (dk + dl) + lr * lr * f.alpha * dk * dl;
        weight_(out) = lr * lr * f.beta / static_cast<double>(n_);
      }
      ++out;
    }
  if (pencil) {  // W = (d_k + d_l)^{-1/2} in packed order, applied before unpacking
    wp_.resize(m_);
    Index q = 0;
    for (Index l = 0; l < r_; ++l)
      for (Index k = l; k < r_; ++k) wp_(q++) = 1.0 / std::sqrt(d(k) + d(l));
  }
  // Sum_i h_i S h_i over the rank's samples is n_p D_p(S), D_p the per-sample
  // term of the serial operator on the rank's rows (signed square roots of
  // the c x c blocks and one SYRK: 3 n_p C r^2 flops, theory/operator.md, section 4).
  if (zp_.rows() > 0) {
    local_geometry_.emplace(Geometry::from_factor(zp_, g.hessian_eigenvalues, c_));
    local_d_.emplace(*local_geometry_, 1, Sampling::with_replacement);  // alpha = 0, beta = 1: Q = D_p
    local_samples_ = local_geometry_->samples();
  }
  s_.resize(r_, r_);
  part_.resize(r_, r_);
  full_.resize(m_);
  reduced_.resize(local_);
}

void DistributedOperator::apply(const double* x, double* y) {
  detail::throw_if_interrupted("sgdstab::mpi eigensolver");
  const double t0 = wall();
  MPI_Allgatherv(x, static_cast<int>(local_), MPI_DOUBLE, full_.data(), counts_.data(), displs_.data(), MPI_DOUBLE,
                 comm_);
  const double t1 = wall();
  // The lower triangle of S (W o S for the pencil): the inverse of pack() (off-diagonals / sqrt 2).
  Index idx = 0;
  for (Index l = 0; l < r_; ++l) {
    s_(l, l) = pencil_ ? full_(idx) * wp_(idx) : full_(idx);
    ++idx;
    for (Index k = l + 1; k < r_; ++k, ++idx) s_(k, l) = (pencil_ ? full_(idx) * wp_(idx) : full_(idx)) / kSqrt2;
  }
  // This rank's part of sum_i h_i S h_i (lower triangle).
  const double t_products = wall();
  if (local_d_) {
    local_d_->quadratic_lower_into(s_, part_);
  } else {
    part_.setZero();
  }
  const double t_packed = wall();
  // Packed (off-diagonals times sqrt 2, as pack()) over the gathered vector, then summed onto the owners.
  const double np = static_cast<double>(local_samples_), np2 = kSqrt2 * np;
  idx = 0;
  for (Index l = 0; l < r_; ++l) {
    full_(idx++) = np * part_(l, l);
    for (Index k = l + 1; k < r_; ++k) full_(idx++) = np2 * part_(k, l);
  }
  const double t2 = wall();
  MPI_Reduce_scatter(full_.data(), reduced_.data(), counts_.data(), MPI_DOUBLE, MPI_SUM, comm_);
  const double t3 = wall();
  for (Index q = 0; q < local_; ++q) y[q] = diag_(q) * x[q] + weight_(q) * reduced_(q);
  ++applications_;
  ++times_.applications;
  times_.communication_seconds += (t1 - t0) + (t3 - t2);
  times_.product_seconds += t_packed - t_products;
  times_.elementwise_seconds += (t_products - t1) + (t2 - t_packed) + (wall() - t3);
}

// The shell matrix's product: errors cannot cross SLEPc's C frames, and a
// rank that stops while the others wait in a collective would hang them: it
// reports and ends every rank (theory/distributed.md, section 4).
namespace {

PetscErrorCode shell_mult(Mat a, Vec x, Vec y) {
  DistributedOperator* op = nullptr;
  MatShellGetContext(a, &op);
  const PetscScalar* px = nullptr;
  PetscScalar* py = nullptr;
  VecGetArrayRead(x, &px);
  VecGetArray(y, &py);
  try {
    op->apply(px, py);
  } catch (const std::exception& e) {
    std::cerr << "sgdstab-mpi: rank " << comm_rank(PETSC_COMM_WORLD) << ": " << e.what() << "; ending every rank\n";
    MPI_Abort(PETSC_COMM_WORLD, 1);
  }
  VecRestoreArrayRead(x, &px);
  VecRestoreArray(y, &py);
  return 0;
}

// A PETSc/SLEPc error code as a numerical_error naming the call.
void check_petsc(PetscErrorCode code, const char* what) {
  if (code != 0) throw numerical_error(std::string("SLEPc/PETSc: ") + what + " failed (error " + std::to_string(code) + ")");
}

}  // namespace

// The largest (algebraic) eigenvalue of the symmetric distributed operator
// by SLEPc's Krylov-Schur.
TopValue slepc_top(MPI_Comm comm, DistributedOperator& op, const SolverOptions& o) {
  TopValue out;
  out.report.method = Method::lanczos;
  Mat a = nullptr;
  EPS eps = nullptr;
  const PetscInt local = static_cast<PetscInt>(op.local_size()), global = static_cast<PetscInt>(op.global_size());
  check_petsc(MatCreateShell(comm, local, local, global, global, &op, &a), "MatCreateShell");
  check_petsc(MatShellSetOperation(a, MATOP_MULT, reinterpret_cast<void (*)(void)>(shell_mult)),
              "MatShellSetOperation");
  check_petsc(EPSCreate(comm, &eps), "EPSCreate");
  check_petsc(EPSSetOperators(eps, a, nullptr), "EPSSetOperators");
  check_petsc(EPSSetProblemType(eps, EPS_HEP), "EPSSetProblemType");
  check_petsc(EPSSetType(eps, EPSKRYLOVSCHUR), "EPSSetType");
  check_petsc(EPSSetWhichEigenpairs(eps, EPS_LARGEST_REAL), "EPSSetWhichEigenpairs");
  const PetscInt ncv = o.subspace_dimension > 0 ? static_cast<PetscInt>(std::min(o.subspace_dimension, op.global_size()))
                                                : PETSC_DEFAULT;
  check_petsc(EPSSetDimensions(eps, 1, ncv, PETSC_DEFAULT), "EPSSetDimensions");
  check_petsc(EPSSetTolerances(eps, o.tolerance, static_cast<PetscInt>(o.max_iterations)), "EPSSetTolerances");
  check_petsc(EPSSolve(eps), "EPSSolve");
  PetscInt nconv = 0, its = 0;
  EPSGetConverged(eps, &nconv);
  EPSGetIterationNumber(eps, &its);
  out.report.iterations = static_cast<Index>(its);
  if (nconv >= 1) {
    PetscScalar kr = 0.0, ki = 0.0;
    PetscReal err = 0.0;
    check_petsc(EPSGetEigenvalue(eps, 0, &kr, &ki), "EPSGetEigenvalue");
    check_petsc(EPSComputeError(eps, 0, EPS_ERROR_RELATIVE, &err), "EPSComputeError");
    out.value = static_cast<double>(kr);
    Vec v = nullptr;
    check_petsc(MatCreateVecs(a, &v, nullptr), "MatCreateVecs");
    check_petsc(EPSGetEigenvector(eps, 0, v, nullptr), "EPSGetEigenvector");
    const PetscScalar* pv = nullptr;
    VecGetArrayRead(v, &pv);
    double local_sums[2] = {0.0, 0.0}, sums[2] = {0.0, 0.0};
    for (Index q = 0; q < op.local_size(); ++q) {
      local_sums[0] += op.p_diagonal()(q) * pv[q] * pv[q];
      local_sums[1] += pv[q] * pv[q];
    }
    VecRestoreArrayRead(v, &pv);
    VecDestroy(&v);
    MPI_Allreduce(local_sums, sums, 2, MPI_DOUBLE, MPI_SUM, comm);
    out.vpv = sums[1] > 0.0 ? sums[0] / sums[1] : 0.0;
    out.report.residual = static_cast<double>(err);
    out.report.error_bound = static_cast<double>(err);
    out.report.status = Status::converged;
    out.report.message = "converged (SLEPc Krylov-Schur on " + std::to_string(comm_size(comm)) + " ranks, " +
                         std::to_string(its) + " restarts)";
  } else {
    out.report.status = Status::not_converged;
    out.report.message = "SLEPc Krylov-Schur did not converge in " + std::to_string(its) + " restarts on " +
                         std::to_string(comm_size(comm)) + " ranks: the value is not to be trusted";
  }
  out.report.matvecs = op.applications();
  EPSDestroy(&eps);
  MatDestroy(&a);
  return out;
}

void check_memory_per_rank(MPI_Comm comm, const DistributedGeometry& g, const SolverOptions& o) {
  agree(comm, [&] {
    check_memory(bytes_per_rank(g, comm_size(comm), o),
                 "the distributed operator on each of " + std::to_string(comm_size(comm)) + " ranks",
                 o.memory_limit_bytes);
  });
}

}  // namespace internal

double bytes_per_rank(const DistributedGeometry& g, int ranks, const SolverOptions& o) {
  const double r = static_cast<double>(g.rank()), m = static_cast<double>(packed_size(g.rank()));
  const double rows = static_cast<double>(sample_slice(g.samples, ranks, 0).count * g.outputs);
  const double p = static_cast<double>(std::max(ranks, 1));
  const double ncv = o.subspace_dimension > 0 ? static_cast<double>(o.subspace_dimension) : 16.0;
  // Two r x r work matrices (S and the rank's part of R, lower triangles),
  // two full packed vectors (the gathered vector, reused for the partial
  // sums, and W), the rank's rows of Z (the geometry's, a copy as the local
  // operator's geometry, its Z_p S and its stacked signed-root rows), the
  // Krylov basis slice and the local coefficients (theory/distributed.md, section 3).
  return 8.0 * (r + 2.0 * r * r + 2.0 * m + 4.0 * rows * r + (ncv + 8.0) * m / p);
}

}  // namespace sgdstab::mpi
