#pragma once
// Internal side of include/sgdstab/interrupt.hpp.
#include <string>

namespace sgdstab::detail {

/// Throws sgdstab::interrupted naming `where` when an interrupt is pending.
void throw_if_interrupted(const char* where);

/// Registers a temporary file for remove_partial_files() while it exists
/// (matrix_io's atomic writes hold one from creation to rename).
class TempFileGuard {
 public:
  explicit TempFileGuard(const std::string& path);
  ~TempFileGuard();
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace sgdstab::detail
