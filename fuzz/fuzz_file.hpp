#pragma once
// Shared by the file-reader fuzz targets: the input bytes become a file (the
// readers take paths), and the errors a reader may throw on bad bytes are
// the library's own (io_error, invalid_argument, resource_error). Anything
// else escaping -- std::bad_alloc, std::length_error, a crash, a sanitizer
// report -- is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sgdstab/errors.hpp"

namespace sgdstab::fuzz {

/// A per-process scratch path ending in `suffix` (the readers pick the
/// format by extension or magic number).
inline std::string scratch_path(const std::string& suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/sgdstab_fuzz_" +
         std::to_string(::getpid()) + suffix;
}

inline void write_bytes(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

/// Calls read(path) and accepts only the library's documented errors.
template <class Read>
void expect_clean(const std::string& path, Read read) {
  try {
    read(path);
  } catch (const sgdstab::io_error&) {
  } catch (const sgdstab::invalid_argument&) {
  } catch (const sgdstab::resource_error&) {
  }
}

}  // namespace sgdstab::fuzz
