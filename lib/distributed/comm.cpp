// Communication helpers and the distribution of samples over ranks
// (theory/distributed.md, sections 1 and 4).
#include "distributed/comm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "foundations/check.hpp"
#include "sgdstab/distributed.hpp"
#include "sgdstab/matrix_io.hpp"

namespace sgdstab::mpi {
namespace internal {

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

int int_count(double count, const char* what) {
  if (count > static_cast<double>(std::numeric_limits<int>::max()))
    throw resource_error(std::string(what) + ": " + detail::fmt(count) +
                         " elements exceed the int count of one MPI message");
  return static_cast<int>(count);
}

[[noreturn]] void throw_kind(ErrorKind kind, const std::string& what) {
  switch (kind) {
    case ErrorKind::invalid_argument: throw sgdstab::invalid_argument(what);
    case ErrorKind::io_error: throw io_error(what);
    case ErrorKind::resource_error: throw resource_error(what);
    case ErrorKind::numerical_error: throw numerical_error(what);
    default: throw std::runtime_error(what);
  }
}

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

}  // namespace internal

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

using Eigen::MatrixXd;
using internal::agree;
using internal::comm_rank;
using internal::comm_size;

SampleSlice sample_slice(Index samples, int ranks, int rank) {
  const Index p = std::max(ranks, 1), q = (samples + p - 1) / p;
  SampleSlice out;
  out.first = std::min<Index>(static_cast<Index>(rank) * q, samples);
  out.count = std::max<Index>(0, std::min<Index>(q, samples - out.first));
  return out;
}

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

}  // namespace sgdstab::mpi
