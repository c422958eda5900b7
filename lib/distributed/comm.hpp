#pragma once
// What the distributed component's units share (internal): the ranks of a
// communicator, the wall clock, MPI's int counts, the agreement on errors
// across ranks (theory/distributed.md, section 4) and the global range
// check of an input's entries.
#include <mpi.h>

#include <exception>
#include <string>

#include "sgdstab/errors.hpp"

namespace sgdstab::mpi::internal {

int comm_size(MPI_Comm comm);
int comm_rank(MPI_Comm comm);
inline double wall() { return MPI_Wtime(); }

/// count as an int, the count of one MPI message. \throws resource_error naming `what` beyond INT_MAX.
int int_count(double count, const char* what);

/// max |entry| over all ranks (the same on every rank, so every rank throws
/// alike). \throws invalid_argument for entries beyond 2^{+-window}: the serial
/// reduction rescales those (theory/scaling.md), the distributed one does not.
double global_scale(MPI_Comm comm, double local_max, int window, const std::string& what, const char* symbol);

// The kinds of error a rank can raise, so every rank throws the same one.
enum class ErrorKind : int { none = 0, invalid_argument, io_error, resource_error, numerical_error, other };

/// Throws the sgdstab error of this kind with this message.
[[noreturn]] void throw_kind(ErrorKind kind, const std::string& what);

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


}  // namespace sgdstab::mpi::internal
