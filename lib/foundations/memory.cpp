#include "sgdstab/memory.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "sgdstab/errors.hpp"

namespace sgdstab {

std::size_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::size_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 5) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
  return buf;
}

void check_memory(double bytes, const std::string& what, double limit) {
  if (limit <= 0) {
    if (bytes <= kMemoryCheckFloor) return;
    limit = static_cast<double>(available_memory_bytes());
  }
  if (limit <= 0) return;  // unknown: no check possible
  if (bytes > limit)
    throw resource_error(what + " needs about " + format_bytes(bytes) + " but only " +
                         format_bytes(limit) + " is available");
}

}  // namespace sgdstab
