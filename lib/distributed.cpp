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
#include <optional>
#include <stdexcept>
#include <utility>
#include <string>
#include <vector>

#include "check.hpp"
#include "family.hpp"
#include "region_family.hpp"
#include "interrupt_detail.hpp"
#include "linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/matrix_io.hpp"
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

// Times of the applications of the last solve on this rank.
ApplicationTimes g_times;

double wall() { return MPI_Wtime(); }

int int_count(double count, const char* what) {
  if (count > static_cast<double>(std::numeric_limits<int>::max()))
    throw resource_error(std::string(what) + ": " + detail::fmt(count) +
                         " elements exceed the int count of one MPI message");
  return static_cast<int>(count);
}

// The kinds of error a rank can raise, so every rank throws the same one.
enum class ErrorKind : int { none = 0, invalid_argument, io_error, resource_error, numerical_error, other };

[[noreturn]] void throw_kind(ErrorKind kind, const std::string& what) {
  switch (kind) {
    case ErrorKind::invalid_argument: throw sgdstab::invalid_argument(what);
    case ErrorKind::io_error: throw io_error(what);
    case ErrorKind::resource_error: throw resource_error(what);
    case ErrorKind::numerical_error: throw numerical_error(what);
    default: throw std::runtime_error(what);
  }
}

// Runs f on every rank; when it throws on any rank, every rank throws the
// error of the lowest such rank (its kind and message), so no rank goes on
// into a collective the others never reach (theory/distributed.md, section 4).
template <class F>
void agree(MPI_Comm comm, F&& f) {
  ErrorKind kind = ErrorKind::none;
  std::string message;
  try {
    f();
  } catch (const sgdstab::invalid_argument& e) {
    kind = ErrorKind::invalid_argument, message = e.what();
  } catch (const io_error& e) {
    kind = ErrorKind::io_error, message = e.what();
  } catch (const resource_error& e) {
    kind = ErrorKind::resource_error, message = e.what();
  } catch (const numerical_error& e) {
    kind = ErrorKind::numerical_error, message = e.what();
  } catch (const std::exception& e) {
    kind = ErrorKind::other, message = e.what();
  }
  const int size = comm_size(comm);
  const int mine = kind == ErrorKind::none ? size : comm_rank(comm);
  int first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return;
  int head[2] = {static_cast<int>(kind), static_cast<int>(message.size())};
  MPI_Bcast(head, 2, MPI_INT, first, comm);
  message.resize(static_cast<std::size_t>(head[1]));
  MPI_Bcast(message.data(), head[1], MPI_CHAR, first, comm);
  throw_kind(static_cast<ErrorKind>(head[0]), message);
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
  DistributedOperator(MPI_Comm comm, const DistributedGeometry& g, SamplingFactors f, bool pencil, double lr)
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

  Index local_size() const { return local_; }
  /// P_kl = d_k d_l / (d_k + d_l) on this rank's slice (theory/region.md).
  const VectorXd& p_diagonal() const { return p_; }
  Index global_size() const { return m_; }
  Index applications() const { return applications_; }

  // y (this rank's slice) = M x (this rank's slice): collective.
  void apply(const double* x, double* y) {
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
    ++g_times.applications;
    g_times.communication_seconds += (t1 - t0) + (t3 - t2);
    g_times.product_seconds += t_packed - t_products;
    g_times.elementwise_seconds += (t_products - t1) + (t2 - t_packed) + (wall() - t3);
  }

 private:
  MPI_Comm comm_;
  Index r_, c_, n_, m_;
  bool pencil_;
  const MatrixXd& zp_;  // this rank's rows of Z (its samples)
  Index local_ = 0, lo_ = 0;
  std::vector<int> counts_, displs_;
  std::optional<Geometry> local_geometry_;             // the rank's rows of Z as a Geometry
  std::optional<SecondMomentOperator> local_d_;        // D on those rows
  Index local_samples_ = 0;
  MatrixXd s_, part_;
  VectorXd diag_, weight_, p_, wp_, full_, reduced_;
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

void check_memory_per_rank(MPI_Comm comm, const DistributedGeometry& g, const SolverOptions& o) {
  agree(comm, [&] {
    check_memory(bytes_per_rank(g, comm_size(comm), o),
                 "the distributed operator on each of " + std::to_string(comm_size(comm)) + " ranks",
                 o.memory_limit_bytes);
  });
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ScaLAPACK and BLACS (the C interfaces of libscalapack).
extern "C" {
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int* context, const char* order, int nprow, int npcol);
void Cblacs_gridinfo(int context, int* nprow, int* npcol, int* myrow, int* mycol);
void Cblacs_gridexit(int context);
void Cpdgemr2d(int m, int n, const double* a, int ia, int ja, const int* desca, double* b, int ib, int jb,
               const int* descb, int context);
int numroc_(const int* n, const int* nb, const int* iproc, const int* isrcproc, const int* nprocs);
void descinit_(int* desc, const int* m, const int* n, const int* mb, const int* nb, const int* irsrc,
               const int* icsrc, const int* ictxt, const int* lld, int* info);
void pdsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* ia, const int* ja,
              const int* desca, double* w, double* z, const int* iz, const int* jz, const int* descz, double* work,
              const int* lwork, int* iwork, const int* liwork, int* info);
}

// A BLACS process grid on a communicator, released on scope exit.
class BlacsGrid {
 public:
  BlacsGrid(MPI_Comm comm, int rows, int cols) : handle_(Csys2blacs_handle(comm)), context_(handle_) {
    Cblacs_gridinit(&context_, "Row", rows, cols);
    Cblacs_gridinfo(context_, &rows_, &cols_, &row_, &col_);
  }
  ~BlacsGrid() {
    if (row_ >= 0) Cblacs_gridexit(context_);
    Cfree_blacs_system_handle(handle_);
  }
  BlacsGrid(const BlacsGrid&) = delete;
  BlacsGrid& operator=(const BlacsGrid&) = delete;
  int context() const { return context_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }
  int row() const { return row_; }
  int col() const { return col_; }

 private:
  int handle_, context_, rows_ = 0, cols_ = 0, row_ = -1, col_ = -1;
};

// Local rows (or columns) of an n-long dimension in blocks of nb over p processes.
int local_extent(int n, int nb, int proc, int procs) {
  const int zero = 0;
  return numroc_(&n, &nb, &proc, &zero, &procs);
}

struct Descriptor {
  int d[9] = {};
  Descriptor(int m, int n, int mb, int nb, int context, int lld) {
    const int zero = 0;
    int info = 0;
    descinit_(d, &m, &n, &mb, &nb, &zero, &zero, &context, &lld, &info);
    if (info != 0) throw numerical_error("ScaLAPACK descinit failed (info " + std::to_string(info) + ")");
  }
};

// The near-square process grid rows x cols = P with rows <= cols.
std::pair<int, int> grid_shape(int p) {
  int rows = static_cast<int>(std::sqrt(static_cast<double>(p)));
  while (rows > 1 && p % rows != 0) --rows;
  return {rows, p / rows};
}

// max |entry| over all ranks (the same on every rank, so every rank throws
// alike): entries beyond 2^{+-window} are refused, since the serial reduction
// rescales those (theory/scaling.md) and the distributed one does not.
double global_scale(MPI_Comm comm, double local_max, int window, const std::string& what, const char* symbol) {
  double out = 0.0;
  MPI_Allreduce(&local_max, &out, 1, MPI_DOUBLE, MPI_MAX, comm);
  const int e = out > 0 ? std::ilogb(out) : 0;
  if (e > window || e < -window)
    throw sgdstab::invalid_argument(what + " are near 2^" + std::to_string(e) + ": sgdstab-mpi needs max|" + symbol +
                                    "| between 2^-" + std::to_string(window) + " and 2^" + std::to_string(window) +
                                    " (rescale the input; the serial reduction rescales by itself)");
  return out;
}

constexpr int kBlock = 64;  // ScaLAPACK's block size for the eigendecomposition

}  // namespace

SampleSlice sample_slice(Index samples, int ranks, int rank) {
  const Index p = std::max(ranks, 1), q = (samples + p - 1) / p;
  SampleSlice out;
  out.first = std::min<Index>(static_cast<Index>(rank) * q, samples);
  out.count = std::max<Index>(0, std::min<Index>(q, samples - out.first));
  return out;
}

ApplicationTimes last_application_times() { return g_times; }

DistributedGeometry distribute(MPI_Comm comm, const Geometry& g) {
  DistributedGeometry out;
  out.samples = g.samples();
  out.outputs = g.outputs();
  out.params = g.params();
  out.hessian_eigenvalues = g.hessian_eigenvalues();
  out.largest_discarded = g.largest_discarded();
  out.slice = sample_slice(g.samples(), comm_size(comm), comm_rank(comm));
  out.factor_rows = g.factor().middleRows(out.slice.first * g.outputs(), out.slice.count * g.outputs());
  return out;
}

MatrixXd read_rows(MPI_Comm comm, const std::string& path, Index outputs) {
  MatrixXd out;
  agree(comm, [&] {
    detail::require(outputs >= 1, "sgdstab::mpi::read_rows", "outputs must be >= 1, got " + std::to_string(outputs));
    const bool npy = ends_with(path, ".npy");
    MatrixXd whole;
    Index rows = 0;
    if (npy) {
      rows = static_cast<Index>(npy_shape(path).first);
    } else {
      whole = read_matrix(path);
      rows = whole.rows();
    }
    if (rows % outputs != 0)
      throw sgdstab::invalid_argument(path + ": " + std::to_string(rows) + " rows are not a multiple of outputs = " +
                                      std::to_string(outputs));
    const SampleSlice sl = sample_slice(rows / outputs, comm_size(comm), comm_rank(comm));
    out = npy ? read_npy_rows(path, static_cast<long long>(sl.first * outputs), static_cast<long long>(sl.count * outputs))
              : MatrixXd(whole.middleRows(sl.first * outputs, sl.count * outputs));
  });
  return out;
}

MatrixXd gram_rows_of_jacobian(MPI_Comm comm, const MatrixXd& jrows, Index outputs) {
  const std::string where = "sgdstab::mpi::gram_rows_of_jacobian";
  const int size = comm_size(comm);
  long long local[2] = {static_cast<long long>(jrows.rows()), static_cast<long long>(jrows.cols())}, cols[2] = {0, 0};
  long long total = 0;
  MPI_Allreduce(&local[0], &total, 1, MPI_LONG_LONG, MPI_SUM, comm);
  const long long mine_neg[2] = {local[1], -local[1]};
  MPI_Allreduce(mine_neg, cols, 2, MPI_LONG_LONG, MPI_MAX, comm);
  double amax = 0.0;
  agree(comm, [&] {
    detail::require(cols[0] == -cols[1], where,
                    "the ranks hold Jacobian rows of different lengths (" + std::to_string(-cols[1]) + " to " +
                        std::to_string(cols[0]) + " columns)");
    detail::require(outputs >= 1 && total % outputs == 0, where,
                    std::to_string(total) + " rows are not a multiple of outputs = " + std::to_string(outputs));
    const SampleSlice sl = sample_slice(total / outputs, size, comm_rank(comm));
    detail::require(jrows.rows() == sl.count * outputs, where,
                    "this rank holds " + std::to_string(jrows.rows()) + " rows, sample_slice says " +
                        std::to_string(sl.count * outputs));
    if (!jrows.allFinite()) throw sgdstab::invalid_argument(where + ": the Jacobian has NaN or Inf entries");
    amax = jrows.size() > 0 ? jrows.cwiseAbs().maxCoeff() : 0.0;
  });
  global_scale(comm, amax, 256, where + ": the Jacobian's entries", "J");
  agree(comm, [&] {
    check_memory(8.0 * static_cast<double>(jrows.rows()) * static_cast<double>(total) +
                     8.0 * static_cast<double>(sample_slice(total / outputs, size, 0).count * outputs) *
                         static_cast<double>(cols[0]),
                 "this rank's rows of the Gram J J^T and one block of J");
  });
  const Index nc = static_cast<Index>(total), p = static_cast<Index>(cols[0]);
  MatrixXd out(jrows.rows(), nc), block;
  for (int k = 0; k < size; ++k) {  // rank k's rows of J, to every rank
    const SampleSlice sl = sample_slice(nc / outputs, size, k);
    const Index rows = sl.count * outputs;
    block = k == comm_rank(comm) ? jrows : MatrixXd(rows, p);
    MPI_Bcast(block.data(), int_count(static_cast<double>(rows) * static_cast<double>(p), "a block of the Jacobian"),
              MPI_DOUBLE, k, comm);
    if (rows > 0 && jrows.rows() > 0)
      detail::gemm(false, true, jrows.rows(), rows, p, 1.0, jrows.data(), jrows.rows(), block.data(), rows, 0.0,
                   out.data() + sl.first * outputs * out.rows(), out.rows());
  }
  return out;
}

double reduction_bytes_per_rank(Index gram_size, int ranks) {
  const double n = static_cast<double>(gram_size), p = static_cast<double>(std::max(ranks, 1));
  const auto [rows, cols] = grid_shape(std::max(ranks, 1));
  const double nr = n / rows + kBlock, nq = n / cols + kBlock;
  // The block-cyclic copy of K, its eigenvectors, pdsyevd's work (about
  // 2 NP NQ + 7 n), the rows of the kept eigenvectors, and one exchanged
  // block of the symmetry check (the caller's rows of K are not counted).
  return 8.0 * (2.0 * nr * nq + (2.0 * nr * nq + 7.0 * n) + n * n / p + (n / p + 1) * (n / p + 1)) + 4.0 * (8.0 * n);
}

DistributedGeometry reduce_gram(MPI_Comm comm, const MatrixXd& krows, Index outputs, const ReductionOptions& o) {
  const double t0 = wall();
  const std::string where = "sgdstab::mpi::reduce_gram";
  const int size = comm_size(comm), me = comm_rank(comm);
  long long local_rows = static_cast<long long>(krows.rows()), total = 0;
  MPI_Allreduce(&local_rows, &total, 1, MPI_LONG_LONG, MPI_SUM, comm);
  const Index nc = static_cast<Index>(total);
  double amax = 0.0;
  agree(comm, [&] {
    o.validate();
    detail::require(o.space != Space::parameter, where,
                    "the parameter-space reduction needs a Jacobian, not a Gram matrix");
    detail::require(krows.cols() == nc, where,
                    "the Gram matrix must be square, got " + std::to_string(nc) + " rows and " +
                        std::to_string(krows.cols()) + " columns");
    detail::require(outputs >= 1 && nc % outputs == 0, where,
                    "the Gram's size " + std::to_string(nc) + " is not a multiple of outputs = " + std::to_string(outputs));
    const SampleSlice sl = sample_slice(nc / outputs, size, me);
    detail::require(krows.rows() == sl.count * outputs, where,
                    "this rank holds " + std::to_string(krows.rows()) + " rows, sample_slice says " +
                        std::to_string(sl.count * outputs));
    if (!krows.allFinite()) throw sgdstab::invalid_argument(where + ": the Gram matrix has NaN or Inf entries");
    amax = krows.size() > 0 ? krows.cwiseAbs().maxCoeff() : 0.0;
    if (nc > static_cast<Index>(std::numeric_limits<int>::max()))
      throw resource_error(where + ": a Gram of size " + std::to_string(nc) + " exceeds ScaLAPACK's int indices");
    check_memory(reduction_bytes_per_rank(nc, size),
                 "the distributed eigendecomposition of a " + std::to_string(nc) + " x " + std::to_string(nc) +
                     " Gram on each of " + std::to_string(size) + " ranks",
                 o.memory_limit_bytes);
  });
  const double scale = global_scale(comm, amax, 512, where + ": the Gram's entries", "K");
  const Index n = nc / outputs;
  const SampleSlice mine = sample_slice(n, size, me);
  // Symmetry (max |K - K^T|) and the symmetric part: at step t this rank
  // sends its rows x the columns of rank me + t and receives rank me - t's
  // rows x its own columns.
  MatrixXd a = krows;
  double asym = 0.0;
  for (int t = 0; t < size; ++t) {
    const int to = (me + t) % size, from = (me - t + size) % size;
    const SampleSlice st = sample_slice(n, size, to), sf = sample_slice(n, size, from);
    const MatrixXd send = krows.middleCols(st.first * outputs, st.count * outputs);
    MatrixXd recv(sf.count * outputs, krows.rows());
    MPI_Sendrecv(send.data(), int_count(static_cast<double>(send.size()), "a block of the Gram"), MPI_DOUBLE, to, 17,
                 recv.data(), int_count(static_cast<double>(recv.size()), "a block of the Gram"), MPI_DOUBLE, from, 17,
                 comm, MPI_STATUS_IGNORE);
    if (recv.size() > 0) {
      const auto mineblock = krows.middleCols(sf.first * outputs, sf.count * outputs);
      asym = std::max(asym, (mineblock - recv.transpose()).cwiseAbs().maxCoeff());
      a.middleCols(sf.first * outputs, sf.count * outputs) = 0.5 * (mineblock + recv.transpose());
    }
  }
  double global_asym = 0.0;
  MPI_Allreduce(&asym, &global_asym, 1, MPI_DOUBLE, MPI_MAX, comm);
  if (global_asym > o.gram_tolerance * scale)
    throw sgdstab::invalid_argument(where + ": the Gram matrix is not symmetric (max |K - K^T| = " +
                                    detail::fmt(global_asym) + " > gram_tolerance * max|K| = " +
                                    detail::fmt(o.gram_tolerance * scale) + ")");
  // ScaLAPACK: the rows (a P x 1 grid, blocks of ceil(n / P) samples) to a
  // near-square grid of 64 x 64 blocks, pdsyevd there, the kept eigenvectors
  // back to the rows (theory/distributed.md, section 5).
  const int N = static_cast<int>(nc);
  const int row_block = std::max(1, static_cast<int>(sample_slice(n, size, 0).count * outputs));
  const BlacsGrid column(comm, size, 1);
  const auto [pr, pc] = grid_shape(size);
  const BlacsGrid grid(comm, pr, pc);
  const int nb = std::min(kBlock, std::max(1, N / std::max(pr, pc)));
  const int lr = local_extent(N, nb, grid.row(), grid.rows()), lc = local_extent(N, nb, grid.col(), grid.cols());
  const Descriptor drows(N, N, row_block, N, column.context(), std::max<int>(1, static_cast<int>(a.rows())));
  const Descriptor dgrid(N, N, nb, nb, grid.context(), std::max(1, lr));
  std::vector<double> ag(static_cast<std::size_t>(std::max(1, lr)) * static_cast<std::size_t>(std::max(1, lc))),
      zg(ag.size());
  Cpdgemr2d(N, N, a.data(), 1, 1, drows.d, ag.data(), 1, 1, dgrid.d, column.context());
  a.resize(0, 0);
  VectorXd w(N);
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  const int one = 1;
  double work_query = 0.0;
  pdsyevd_("V", "L", &N, ag.data(), &one, &one, dgrid.d, w.data(), zg.data(), &one, &one, dgrid.d, &work_query, &lwork,
           &iwork_query, &liwork, &info);
  // The documented minima (the query of reference ScaLAPACK 2.2 falls short
  // of what PDORMTR checks inside pdsyevd on one process, seen at N = 9): LWORK >= max(1 + 6N + 2 NP NQ, TRILWMIN) + 2N with
  // TRILWMIN = 3N + max(NB (NP + 1), 3 NB); LIWORK >= 7N + 8 NPCOL + 2.
  {
    const double np = lr, nq = lc, big_n = N, b = nb;
    const double trilwmin = 3.0 * big_n + std::max(b * (np + 1.0), 3.0 * b);
    // plus what PDORMTR asks for its own (max(NB (NB - 1) / 2, (NQ + NP) NB) + NB^2).
    const double ormtr = std::max(b * (b - 1.0) / 2.0, (nq + np + 2.0 * b) * b) + b * b;
    const double need = std::max(1.0 + 6.0 * big_n + 2.0 * np * nq, trilwmin) + 2.0 * big_n + ormtr;
    const double want = std::max(need, work_query) + 1.0;
    if (want > static_cast<double>(std::numeric_limits<int>::max()))
      throw resource_error(where + ": ScaLAPACK's workspace exceeds its int size");
    lwork = static_cast<int>(want);
    liwork = std::max(iwork_query, 7 * N + 8 * grid.cols() + 2);
  }
  std::vector<double> work(static_cast<std::size_t>(lwork));
  std::vector<int> iwork(static_cast<std::size_t>(liwork));
  pdsyevd_("V", "L", &N, ag.data(), &one, &one, dgrid.d, w.data(), zg.data(), &one, &one, dgrid.d, work.data(), &lwork,
           iwork.data(), &liwork, &info);
  int worst = info == 0 ? 0 : 1;
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, comm);
  if (worst != 0)
    throw numerical_error(where + ": ScaLAPACK pdsyevd failed (info " + std::to_string(info) + " on rank " +
                          std::to_string(me) + ")");
  work.clear();
  work.shrink_to_fit();
  ag.clear();
  ag.shrink_to_fit();
  // The checks and the rank cut-off of Geometry::from_gram / from_eigen (theory/reduction.md).
  const double top = w(N - 1);
  if (w(0) < -o.gram_tolerance * std::max(top, 0.0) || (top <= 0 && w(0) < 0))
    throw sgdstab::invalid_argument(where + ": the Gram matrix is not positive semidefinite (smallest eigenvalue " +
                                    detail::fmt(w(0)) + " < -gram_tolerance * lambda_max = " +
                                    detail::fmt(-o.gram_tolerance * top) + ")");
  const double negative_floor = std::max(0.0, -w(0));
  const double rel = o.rank_tolerance > 0 ? o.rank_tolerance
                                          : 10.0 * static_cast<double>(nc) * std::numeric_limits<double>::epsilon();
  const double cutoff = std::max(rel * std::max(top, 0.0), 2.0 * negative_floor);
  Index r = 0;
  while (r < nc && w(N - 1 - r) > cutoff && top > 0) ++r;
  if (r == 0)
    throw sgdstab::invalid_argument("Geometry: the Jacobian has rank 0 (largest Gram eigenvalue " + detail::fmt(top) +
                                    " <= cut-off " + detail::fmt(cutoff) +
                                    "): H = 0 and every learning rate is trivially stable; nothing to compute");
  const int R = static_cast<int>(r);
  MatrixXd kept(std::max<Index>(krows.rows(), 0), r);
  const Descriptor dkept(N, R, row_block, std::max(R, 1), column.context(), std::max<int>(1, static_cast<int>(krows.rows())));
  Cpdgemr2d(N, R, zg.data(), 1, N - R + 1, dgrid.d, kept.data(), 1, 1, dkept.d, column.context());
  DistributedGeometry out;
  out.samples = n;
  out.outputs = outputs;
  out.slice = mine;
  out.largest_discarded = r < nc ? std::max(w(N - 1 - R), 0.0) : 0.0;
  out.hessian_eigenvalues.resize(r);
  out.factor_rows.resize(kept.rows(), r);
  for (Index k = 0; k < r; ++k) {  // Z = U_r Lambda_r^{1/2}, descending (theory/reduction.md, eq. 3)
    out.hessian_eigenvalues(k) = w(N - 1 - k) / static_cast<double>(n);
    out.factor_rows.col(k) = kept.col(r - 1 - k) * std::sqrt(w(N - 1 - k));
  }
  out.reduction_seconds = wall() - t0;
  return out;
}

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

ThresholdResult threshold(MPI_Comm comm, const DistributedGeometry& g, Index batch, Sampling sampling,
                          const SolverOptions& o) {
  agree(comm, [&] {
    o.validate();
    check_batch(batch, g.samples, "sgdstab::mpi::threshold");
  });
  check_memory_per_rank(comm, g, o);
  g_times = {};
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples, batch), /*pencil=*/true, 0.0);
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

ThresholdResult threshold(MPI_Comm comm, const Geometry& g, Index batch, Sampling sampling, const SolverOptions& o) {
  return threshold(comm, distribute(comm, g), batch, sampling, o);
}

RadiusResult radius(MPI_Comm comm, const DistributedGeometry& g, double lr, Index batch, Sampling sampling,
                    const SolverOptions& o) {
  agree(comm, [&] {
    o.validate();
    detail::require(std::isfinite(lr) && lr > 0.0, "sgdstab::mpi::radius",
                    "learning rate must be finite and > 0, got " + detail::fmt(lr));
    check_batch(batch, g.samples, "sgdstab::mpi::radius");
  });
  check_memory_per_rank(comm, g, o);
  g_times = {};
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples, batch), /*pencil=*/false, lr);
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

RadiusResult radius(MPI_Comm comm, const Geometry& g, double lr, Index batch, Sampling sampling,
                    const SolverOptions& o) {
  return radius(comm, distribute(comm, g), lr, batch, sampling, o);
}

StabilityRegion region(MPI_Comm comm, const DistributedGeometry& g, const std::vector<Sampling>& schemes,
                       const std::vector<Index>& batches, const SolverOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  agree(comm, [&] {
    o.validate();
    detail::check_region_lists(schemes, batches, g.samples);
  });
  check_memory_per_rank(comm, g, o);
  g_times = {};
  StabilityRegion out;
  out.samples = g.samples;
  out.outputs = g.outputs;
  out.rank = g.rank();
  out.lambda_max = g.lambda_max();
  out.eta_gd = out.eta_mean = 2.0 / g.lambda_max();
  out.method = Method::lanczos;
  // g(s) once per distinct s (theory/region.md, section 2), g(0) exactly.
  std::vector<detail::FamilyMember> members;
  for (const double s : detail::region_s_values(schemes, batches, g.samples)) {
    DistributedOperator op(comm, g, SamplingFactors{1.0 - s, s}, /*pencil=*/true, 0.0);
    const TopValue top = slepc_top(comm, op, o);
    out.matvecs += top.report.matvecs;
    out.restarts += top.report.iterations;
    detail::FamilyMember m;
    m.s = s;
    m.value = top.value;
    m.error = top.value * top.report.residual;  // a symmetric operator: the residual bounds the distance
    m.residual = top.value * top.report.residual;
    if (top.report.converged() && top.value > 0.0) {
      // The Rayleigh quotient's line (1 - t) v'Pv + t v'Rv lies below g (theory/region.md, section 6).
      m.tangent_p = top.vpv;
      m.tangent_r = (top.value - (1.0 - s) * top.vpv) / s;
    }
    m.status = top.report.status;
    m.method = Method::lanczos;
    m.matvecs = top.report.matvecs;
    m.message = top.report.message;
    members.push_back(std::move(m));
  }
  double h00 = 0.0;  // sum over this rank's samples of |Z_i e_0|^4
  for (Index i = 0; i < g.slice.count; ++i) {
    const double h = g.factor_rows.col(0).segment(i * g.outputs, g.outputs).squaredNorm();
    h00 += h * h;
  }
  MPI_Allreduce(MPI_IN_PLACE, &h00, 1, MPI_DOUBLE, MPI_SUM, comm);
  members.push_back(detail::family_at_zero(g.hessian_eigenvalues, h00, g.samples));
  detail::assemble_region(out, members, schemes, batches);
  if (out.converged()) out.message = "converged (SLEPc Krylov-Schur on " + std::to_string(comm_size(comm)) + " ranks)";
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

StabilityRegion region(MPI_Comm comm, const Geometry& g, const std::vector<Sampling>& schemes,
                       const std::vector<Index>& batches, const SolverOptions& o) {
  return region(comm, distribute(comm, g), schemes, batches, o);
}

}  // namespace sgdstab::mpi
