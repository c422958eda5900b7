#pragma once
// Internal: the argument checks and number formatting behind the library's
// error messages (errors.hpp states the contract they implement).
#include <string>

#include "sgdstab/errors.hpp"

namespace sgdstab::detail {

/// Throws sgdstab::invalid_argument("<where>: <what>") when cond is false.
void require(bool cond, const std::string& where, const std::string& what);

/// Formats a double with full precision (%.17g) for messages.
std::string fmt(double x);

}  // namespace sgdstab::detail
