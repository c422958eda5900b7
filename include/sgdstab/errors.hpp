#pragma once
/// \file errors.hpp
/// \brief The exceptions sgdstab throws.
///
/// Contract violations (a bad argument: wrong shape, NaN, B outside 1..n,
/// eta <= 0, ...) throw sgdstab::invalid_argument, a std::invalid_argument,
/// whose message names the argument, its value and the violated condition.
/// Unreadable or corrupt files throw sgdstab::io_error. A problem too large
/// for the memory of this machine throws sgdstab::resource_error *before*
/// anything large is allocated. Numerical outcomes (an eigensolver that did
/// not converge, a LAPACK failure) are reported as a Status in the result
/// struct (types.hpp); only where no result struct exists to carry it -- the
/// construction of a Geometry -- does a LAPACK failure throw
/// sgdstab::numerical_error, whose status() is Status::numerical_failure.
#include <stdexcept>
#include <string>

#include "sgdstab/types.hpp"

namespace sgdstab {

/// A violated precondition on an argument.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A file that cannot be read, or whose contents are malformed.
class io_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A computation that would not fit in memory (or another resource limit).
class resource_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A factorization or eigensolver failed where no result struct can carry
/// the status (see the file comment).
class numerical_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  Status status() const { return Status::numerical_failure; }
};

}  // namespace sgdstab
