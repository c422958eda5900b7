// eta* and rho on SLEPc/PETSc over MPI: theory/distributed.md.
#include "sgdstab/distributed.hpp"

#include <slepceps.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "check.hpp"
#include "family.hpp"
#include "interrupt_detail.hpp"
#include "linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab::mpi {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

const double kSqrt2 = std::sqrt(2.0);

int comm_size(MPI_Comm comm) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  return p;
}
int comm_rank(MPI_Comm comm) {
  int k = 0;
  MPI_Comm_rank(comm, &k);
  return k;
}

// The operator on this rank (theory/distributed.md, section 2): its slice
// [lo, hi) of the m packed coordinates, its samples [s0, s1), and the
// coefficients of y = diag_part .* x + weight .* packed(reduced D-part).
//   pencil:     y_kl = W_kl (alpha d_k d_l W_kl x_kl + (beta / n) R_kl(W o S))
//   transition: y_kl = (1 - lr (d_k + d_l) + lr^2 alpha d_k d_l) x_kl + lr^2 (beta / n) R_kl(S)
// with R(Y) = sum_i h_i Y h_i over all samples (the rank's part reduced).
class DistributedOperator {
 public:
  // (alpha, beta): the coefficients of Q (sampling.hpp), or (1 - s, s) for g(s) of theory/region.md.
  DistributedOperator(MPI_Comm comm, const Geometry& g, SamplingFactors f, bool pencil, double lr)
      : comm_(comm), r_(g.rank()), c_(g.outputs()), n_(g.samples()), m_(packed_size(g.rank())), pencil_(pencil) {
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
    // Samples: an even split, the first n mod P ranks one more.
    const Index base = n_ / size, extra = n_ % size;
    s0_ = rank * base + std::min<Index>(rank, extra);
    const Index s1 = s0_ + base + (rank < extra ? 1 : 0);
    zp_ = g.factor().middleRows(s0_ * c_, (s1 - s0_) * c_);
    // The diagonal coefficients of this rank's slice.
    const VectorXd& d = g.hessian_eigenvalues();
    diag_.resize(local_);
    p_.resize(local_);
    weight_.resize(local_);
    kk_.resize(static_cast<std::size_t>(local_));
    ll_.resize(static_cast<std::size_t>(local_));
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
        kk_[static_cast<std::size_t>(out)] = k;
        ll_[static_cast<std::size_t>(out)] = l;
        ++out;
      }
    if (pencil) {
      w_.resize(r_, r_);
      for (Index l = 0; l < r_; ++l)
        for (Index k = 0; k < r_; ++k) w_(k, l) = 1.0 / std::sqrt(d(k) + d(l));
    }
    full_.resize(m_);
    packed_.resize(m_);
    reduced_.resize(local_);
  }

  Index local_size() const { return local_; }
  /// P_kl = d_k d_l / (d_k + d_l) on this rank's slice (theory/region.md).
  const VectorXd& p_diagonal() const { return p_; }
  Index global_size() const { return m_; }
  Index applications() const { return applications_; }

  // y (this rank's slice) = M x (this rank's slice): collective.
  void apply(const double* x, double* y) {
    detail::throw_if_interrupted("sgdstab::mpi eigensolver");
    MPI_Allgatherv(x, static_cast<int>(local_), MPI_DOUBLE, full_.data(), counts_.data(), displs_.data(), MPI_DOUBLE,
                   comm_);
    s_ = unpack(full_, r_);
    if (pencil_) s_ = s_.cwiseProduct(w_);
    // This rank's part of sum_i h_i S h_i = Z_p^T (blockdiag_i G_i) Z_p, G_i = Z_i S Z_i^T.
    part_.setZero(r_, r_);
    if (zp_.rows() > 0) {
      detail::gemm(false, false, 1.0, zp_, s_, 0.0, zs_);  // Z_p S
      u_.resize(zp_.rows(), r_);
      for (Index i = 0; i < zp_.rows() / c_; ++i) {
        const MatrixXd gi = zs_.middleRows(i * c_, c_) * zp_.middleRows(i * c_, c_).transpose();  // c x c
        u_.middleRows(i * c_, c_).noalias() = gi * zp_.middleRows(i * c_, c_);
      }
      detail::gemm(true, false, 1.0, zp_, u_, 0.0, part_);
    }
    // Packed (off-diagonals times sqrt 2, as pack()), then summed onto the owners.
    Index idx = 0;
    for (Index l = 0; l < r_; ++l) {
      packed_(idx++) = part_(l, l);
      for (Index k = l + 1; k < r_; ++k) packed_(idx++) = kSqrt2 * 0.5 * (part_(k, l) + part_(l, k));
    }
    MPI_Reduce_scatter(packed_.data(), reduced_.data(), counts_.data(), MPI_DOUBLE, MPI_SUM, comm_);
    for (Index q = 0; q < local_; ++q) y[q] = diag_(q) * x[q] + weight_(q) * reduced_(q);
    ++applications_;
  }

 private:
  MPI_Comm comm_;
  Index r_, c_, n_, m_;
  bool pencil_;
  Index local_ = 0, lo_ = 0, s0_ = 0;
  std::vector<int> counts_, displs_;
  MatrixXd zp_, w_, s_, zs_, u_, part_;
  VectorXd diag_, weight_, p_, full_, packed_, reduced_;
  std::vector<Index> kk_, ll_;
  Index applications_ = 0;
};

// The shell matrix's product: errors cannot cross SLEPc's C frames, and a
// rank that stops while the others wait in a collective would hang them: it
// reports and ends every rank (theory/distributed.md, section 4).
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

struct TopValue {
  double value = 0.0;
  double vpv = 0.0;  // v' P v for the unit Ritz vector v (the tangent of theory/region.md, section 6)
  SolveReport report;
};

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

void check_memory_per_rank(MPI_Comm comm, const Geometry& g, const SolverOptions& o) {
  check_memory(bytes_per_rank(g, comm_size(comm), o),
               "the distributed operator on each of " + std::to_string(comm_size(comm)) + " ranks",
               o.memory_limit_bytes);
}

}  // namespace

double bytes_per_rank(const Geometry& g, int ranks, const SolverOptions& o) {
  const double r = static_cast<double>(g.rank()), m = static_cast<double>(packed_size(g.rank()));
  const double nc = static_cast<double>(g.samples() * g.outputs());
  const double p = static_cast<double>(std::max(ranks, 1));
  const double ncv = o.subspace_dimension > 0 ? static_cast<double>(o.subspace_dimension) : 16.0;
  // The replicated factor and eigenvalues, four r x r work matrices, two full
  // packed vectors, the samples' slice (Z_p, Z_p S, U) and the Krylov basis slice.
  return 8.0 * (nc * r + r + 4.0 * r * r + 2.0 * m + 3.0 * nc * r / p + (ncv + 4.0) * m / p);
}

ThresholdResult threshold(MPI_Comm comm, const Geometry& g, Index batch, Sampling sampling, const SolverOptions& o) {
  o.validate();
  check_batch(batch, g.samples(), "sgdstab::mpi::threshold");
  check_memory_per_rank(comm, g, o);
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples(), batch), /*pencil=*/true, 0.0);
  const TopValue top = slepc_top(comm, op, o);
  ThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.report = top.report;
  res.pencil_max = top.value;
  if (res.converged()) {
    if (top.value > 0.0) {
      res.eta_star = 1.0 / top.value;
    } else {
      res.report.status = Status::numerical_failure;
      res.report.message = "the pencil's largest eigenvalue is not positive";
    }
  }
  return res;
}

RadiusResult radius(MPI_Comm comm, const Geometry& g, double lr, Index batch, Sampling sampling,
                    const SolverOptions& o) {
  o.validate();
  detail::require(std::isfinite(lr) && lr > 0.0, "sgdstab::mpi::radius",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  check_batch(batch, g.samples(), "sgdstab::mpi::radius");
  check_memory_per_rank(comm, g, o);
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples(), batch), /*pencil=*/false, lr);
  const TopValue top = slepc_top(comm, op, o);
  RadiusResult res;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report = top.report;
  res.report.error_bound = std::numeric_limits<double>::quiet_NaN();
  res.rho = top.value;  // T is a positive map: its spectral radius is its largest eigenvalue
  return res;
}

StabilityRegion region(MPI_Comm comm, const Geometry& g, const std::vector<Sampling>& schemes,
                       const std::vector<Index>& batches, const SolverOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  o.validate();
  detail::check_region_lists(schemes, batches, g.samples());
  check_memory_per_rank(comm, g, o);
  StabilityRegion out;
  out.samples = g.samples();
  out.outputs = g.outputs();
  out.rank = g.rank();
  out.lambda_max = g.lambda_max();
  out.eta_gd = out.eta_mean = 2.0 / g.lambda_max();
  out.method = Method::lanczos;
  // g(s) once per distinct s (theory/region.md, section 2), s = 0 exactly.
  struct Member {
    double s = 0.0, value = 0.0, error = 0.0;
    SolveReport report;
  };
  std::vector<Member> members;
  const detail::FamilyMember zero = detail::geometry_family_at_zero(g);
  out.tangents.push_back({zero.tangent_p, zero.tangent_r});
  out.knots.push_back({0.0, zero.value});
  members.push_back({0.0, zero.value, 0.0, SolveReport{}});
  members.back().report.status = Status::converged;
  members.back().report.method = Method::dense;
  members.back().report.message = zero.message;
  for (Sampling sc : schemes)
    for (Index b : batches) {
      const double s = region_coordinates(sc, g.samples(), static_cast<double>(b)).second;
      if (std::any_of(members.begin(), members.end(), [s](const Member& m) { return m.s == s; })) continue;
      DistributedOperator op(comm, g, SamplingFactors{1.0 - s, s}, /*pencil=*/true, 0.0);
      const TopValue top = slepc_top(comm, op, o);
      out.matvecs += top.report.matvecs;
      out.restarts += top.report.iterations;
      Member m{s, top.value, top.value * top.report.residual, top.report};
      if (m.report.converged() && top.value > 0.0) {
        // The Rayleigh quotient's line (1 - t) v'Pv + t v'Rv lies below g (section 6).
        out.tangents.push_back({top.vpv, (top.value - (1.0 - s) * top.vpv) / s});
        out.knots.push_back({s, m.value + m.error});
      }
      members.push_back(m);
    }
  std::sort(out.knots.begin(), out.knots.end(), [](const RegionKnot& a, const RegionKnot& b) { return a.s < b.s; });
  out.status = Status::converged;
  for (Sampling sc : schemes) {
    RegionCurve curve{sc, {}};
    for (Index b : batches) {
      const auto [c, s] = region_coordinates(sc, g.samples(), static_cast<double>(b));
      const Member& m = *std::find_if(members.begin(), members.end(), [s = s](const Member& x) { return x.s == s; });
      RegionPoint p;
      p.batch = b;
      p.s = s;
      p.status = m.report.status;
      p.method = m.report.method;
      p.residual = m.report.residual;
      p.message = m.report.message;
      if (p.converged() && m.value > 0.0) {
        p.eta_star = p.eta_high = 1.0 / (c * m.value);
        p.eta_low = 1.0 / (c * (m.value + m.error));
      } else if (p.converged()) {
        p.status = Status::numerical_failure;
        p.message = "the pencil's largest eigenvalue is not positive";
      }
      if (!p.converged() && out.converged()) {
        out.status = p.status;
        out.message = to_string(sc) + ", B = " + std::to_string(b) + ": " + p.message;
      }
      curve.points.push_back(p);
    }
    out.curves.push_back(std::move(curve));
  }
  if (out.converged()) out.message = "converged (SLEPc Krylov-Schur on " + std::to_string(comm_size(comm)) + " ranks)";
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace sgdstab::mpi
