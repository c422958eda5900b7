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
/// not converge) are never exceptions: they are reported in result structs.
#include <stdexcept>
#include <string>

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

namespace detail {
/// Throws sgdstab::invalid_argument("<where>: <what>") when cond is false.
void require(bool cond, const std::string& where, const std::string& what);
/// Formats a double with full precision for error messages.
std::string fmt(double x);
}  // namespace detail

}  // namespace sgdstab
