// The reduction on ScaLAPACK: the Gram's rows from a Jacobian's, and
// Geometry::from_gram's eigendecomposition and rank cut-off on a process
// grid (theory/distributed.md, section 5).
#include <mpi.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "distributed/comm.hpp"
#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "sgdstab/distributed.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::mpi {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using internal::agree;
using internal::comm_rank;
using internal::comm_size;
using internal::global_scale;
using internal::int_count;
using internal::wall;

namespace {

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

constexpr int kBlock = 64;  // ScaLAPACK's block size for the eigendecomposition

}  // namespace

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

namespace {

// The checks of Geometry::from_gram on this rank's rows, agreed by every
// rank, and max|K| over all ranks (theory/distributed.md, section 5).
double check_gram_rows(MPI_Comm comm, const MatrixXd& krows, Index nc, Index outputs, const ReductionOptions& o,
                       const std::string& where) {
  const int size = comm_size(comm), me = comm_rank(comm);
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
  return global_scale(comm, amax, 512, where + ": the Gram's entries", "K");
}

// This rank's rows of (K + K^T) / 2, after checking max |K - K^T| <=
// tolerance: at step t this rank sends its rows x the columns of rank me + t
// and receives rank me - t's rows x its own columns.
MatrixXd symmetric_rows(MPI_Comm comm, const MatrixXd& krows, Index n, Index outputs, double tolerance,
                        const std::string& where) {
  const int size = comm_size(comm), me = comm_rank(comm);
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
  if (global_asym > tolerance)
    throw sgdstab::invalid_argument(where + ": the Gram matrix is not symmetric (max |K - K^T| = " +
                                    detail::fmt(global_asym) + " > gram_tolerance * max|K| = " +
                                    detail::fmt(tolerance) + ")");
  return a;
}

// pdsyevd's workspace (LWORK, LIWORK) on an N x N matrix with local extent
// np x nq in blocks of nb on a grid of `cols` columns. The documented minima
// (the query of reference ScaLAPACK 2.2 falls short of what PDORMTR checks
// inside pdsyevd on one process, seen at N = 9): LWORK >= max(1 + 6N + 2 NP
// NQ, TRILWMIN) + 2N with TRILWMIN = 3N + max(NB (NP + 1), 3 NB), plus what
// PDORMTR asks for its own (max(NB (NB - 1) / 2, (NQ + NP) NB) + NB^2);
// LIWORK >= 7N + 8 NPCOL + 2.
std::pair<int, int> pdsyevd_workspace(int n, int np, int nq, int nb, int cols, double work_query, int iwork_query,
                                      const std::string& where) {
  const double big_n = n, b = nb, dnp = np, dnq = nq;
  const double trilwmin = 3.0 * big_n + std::max(b * (dnp + 1.0), 3.0 * b);
  const double ormtr = std::max(b * (b - 1.0) / 2.0, (dnq + dnp + 2.0 * b) * b) + b * b;
  const double need = std::max(1.0 + 6.0 * big_n + 2.0 * dnp * dnq, trilwmin) + 2.0 * big_n + ormtr;
  const double want = std::max(need, work_query) + 1.0;
  if (want > static_cast<double>(std::numeric_limits<int>::max()))
    throw resource_error(where + ": ScaLAPACK's workspace exceeds its int size");
  return {static_cast<int>(want), std::max(iwork_query, 7 * n + 8 * cols + 2)};
}

// The eigendecomposition of the symmetric N x N matrix whose rows (blocks of
// ceil(n / P) samples) the ranks hold: the rows (a P x 1 grid) to a
// near-square grid of 64 x 64 blocks, pdsyevd there (theory/distributed.md,
// section 5); the kept eigenvectors go back to the rows on request.
class GridEigen {
 public:
  GridEigen(MPI_Comm comm, MatrixXd a, Index n, Index outputs, const std::string& where)
      : comm_(comm), n_(static_cast<int>(a.cols())),
        row_block_(std::max(1, static_cast<int>(sample_slice(n, comm_size(comm), 0).count * outputs))),
        column_(comm, comm_size(comm), 1), grid_(comm, grid_shape(comm_size(comm)).first,
                                                  grid_shape(comm_size(comm)).second),
        nb_(std::min(kBlock, std::max(1, n_ / std::max(grid_.rows(), grid_.cols())))),
        lr_(local_extent(n_, nb_, grid_.row(), grid_.rows())), lc_(local_extent(n_, nb_, grid_.col(), grid_.cols())),
        dgrid_(n_, n_, nb_, nb_, grid_.context(), std::max(1, lr_)),
        zg_(static_cast<std::size_t>(std::max(1, lr_)) * static_cast<std::size_t>(std::max(1, lc_))),
        w_(n_) {
    const Descriptor drows(n_, n_, row_block_, n_, column_.context(), std::max<int>(1, static_cast<int>(a.rows())));
    std::vector<double> ag(zg_.size());
    Cpdgemr2d(n_, n_, a.data(), 1, 1, drows.d, ag.data(), 1, 1, dgrid_.d, column_.context());
    a.resize(0, 0);
    int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
    const int one = 1;
    double work_query = 0.0;
    pdsyevd_("V", "L", &n_, ag.data(), &one, &one, dgrid_.d, w_.data(), zg_.data(), &one, &one, dgrid_.d,
             &work_query, &lwork, &iwork_query, &liwork, &info);
    std::tie(lwork, liwork) = pdsyevd_workspace(n_, lr_, lc_, nb_, grid_.cols(), work_query, iwork_query, where);
    std::vector<double> work(static_cast<std::size_t>(lwork));
    std::vector<int> iwork(static_cast<std::size_t>(liwork));
    pdsyevd_("V", "L", &n_, ag.data(), &one, &one, dgrid_.d, w_.data(), zg_.data(), &one, &one, dgrid_.d, work.data(),
             &lwork, iwork.data(), &liwork, &info);
    int worst = info == 0 ? 0 : 1;
    MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, comm_);
    if (worst != 0)
      throw numerical_error(where + ": ScaLAPACK pdsyevd failed (info " + std::to_string(info) + " on rank " +
                            std::to_string(comm_rank(comm_)) + ")");
  }
  /// The eigenvalues, ascending (the same on every rank).
  const VectorXd& values() const { return w_; }
  /// This rank's `rows` rows of the eigenvectors of the r largest eigenvalues (ascending).
  MatrixXd top_vectors(int r, Index rows) const {
    MatrixXd kept(std::max<Index>(rows, 0), r);
    const Descriptor dkept(n_, r, row_block_, std::max(r, 1), column_.context(), std::max<int>(1, static_cast<int>(rows)));
    Cpdgemr2d(n_, r, zg_.data(), 1, n_ - r + 1, dgrid_.d, kept.data(), 1, 1, dkept.d, column_.context());
    return kept;
  }

 private:
  MPI_Comm comm_;
  int n_, row_block_;
  BlacsGrid column_, grid_;
  int nb_, lr_, lc_;
  Descriptor dgrid_;
  std::vector<double> zg_;
  VectorXd w_;
};

}  // namespace

DistributedGeometry reduce_gram(MPI_Comm comm, const MatrixXd& krows, Index outputs, const ReductionOptions& o) {
  const double t0 = wall();
  const std::string where = "sgdstab::mpi::reduce_gram";
  long long local_rows = static_cast<long long>(krows.rows()), total = 0;
  MPI_Allreduce(&local_rows, &total, 1, MPI_LONG_LONG, MPI_SUM, comm);
  const Index nc = static_cast<Index>(total);
  const double scale = check_gram_rows(comm, krows, nc, outputs, o, where);
  const Index n = nc / outputs;
  const GridEigen eig(comm, symmetric_rows(comm, krows, n, outputs, o.gram_tolerance * scale, where), n, outputs,
                      where);
  // The checks and the rank cut-off of Geometry::from_gram / from_eigen (theory/reduction.md).
  const VectorXd& w = eig.values();
  const int N = static_cast<int>(nc);
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
  const MatrixXd kept = eig.top_vectors(static_cast<int>(r), krows.rows());
  DistributedGeometry out;
  out.samples = n;
  out.outputs = outputs;
  out.slice = sample_slice(n, comm_size(comm), comm_rank(comm));
  out.largest_discarded = r < nc ? std::max(w(N - 1 - static_cast<int>(r)), 0.0) : 0.0;
  out.hessian_eigenvalues.resize(r);
  out.factor_rows.resize(kept.rows(), r);
  for (Index k = 0; k < r; ++k) {  // Z = U_r Lambda_r^{1/2}, descending (theory/reduction.md, eq. 3)
    out.hessian_eigenvalues(k) = w(N - 1 - k) / static_cast<double>(n);
    out.factor_rows.col(k) = kept.col(r - 1 - k) * std::sqrt(w(N - 1 - k));
  }
  out.reduction_seconds = wall() - t0;
  return out;
}

}  // namespace sgdstab::mpi
