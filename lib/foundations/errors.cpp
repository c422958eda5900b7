#include "sgdstab/errors.hpp"

#include <cstdio>

#include "foundations/check.hpp"

namespace sgdstab::detail {

void require(bool cond, const std::string& where, const std::string& what) {
  if (!cond) throw sgdstab::invalid_argument(where + ": " + what);
}

std::string fmt(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

}  // namespace sgdstab::detail
