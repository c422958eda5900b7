#include "sgdstab/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "foundations/memory_detail.hpp"
#include "sgdstab/errors.hpp"

// OpenBLAS's thread count, weak: null when linked against another BLAS.
extern "C" int openblas_get_num_threads() __attribute__((weak));

namespace sgdstab {

namespace {

// A value of `wanted` (in kB) from a /proc file of "Key:  value kB" lines
// (other lines, such as /proc/self/status's "Name:\tsgdstab", skipped); -1
// when absent.
double proc_kb(const char* file, const std::string& wanted) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, wanted.size(), wanted) != 0) continue;
    char* end = nullptr;
    const double v = std::strtod(line.c_str() + wanted.size(), &end);
    return end != line.c_str() + wanted.size() && v >= 0 ? v * 1024.0 : -1.0;
  }
  return -1.0;
}

// The first number of a cgroup file; -1 when absent or "max" (no limit).
double cgroup_number(const std::string& file) {
  std::ifstream in(file);
  std::string text;
  if (!(in >> text) || text == "max") return -1.0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  return end && *end == '\0' && v >= 0 ? v : -1.0;
}

// One key of a cgroup memory.stat file (bytes); 0 when absent.
double cgroup_stat(const std::string& file, const std::string& wanted) {
  std::ifstream in(file);
  std::string key;
  double value = 0;
  while (in >> key >> value)
    if (key == wanted) return value;
  return 0.0;
}

}  // namespace

double detail::cgroup_headroom(const std::string& proc_cgroup, const std::string& root) {
  std::ifstream in(proc_cgroup);
  std::string line;
  double best = -1.0;
  // False when the cgroup's folder (its limit file) is not there.
  auto consider = [&](const std::string& dir, const char* limit_file, const char* usage_file, const char* inactive) {
    if (!std::ifstream(dir + limit_file)) return false;
    const double limit = cgroup_number(dir + limit_file);
    if (limit < 0 || limit >= 0x1p60) return true;  // no limit ("max"; v1 writes about 2^63)
    const double usage = cgroup_number(dir + usage_file);
    if (usage < 0) return true;
    const double used = std::max(0.0, usage - cgroup_stat(dir + "memory.stat", inactive));
    const double room = std::max(0.0, limit - used);
    best = best < 0 ? room : std::min(best, room);
    return true;
  };
  while (std::getline(in, line)) {
    const std::size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty()) {  // v2: "0::/path"
      if (!consider(root + path + "/", "memory.max", "memory.current", "inactive_file"))
        consider(root + "/", "memory.max", "memory.current", "inactive_file");
    } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {  // v1
      if (!consider(root + "/memory" + path + "/", "memory.limit_in_bytes", "memory.usage_in_bytes",
                    "total_inactive_file"))
        consider(root + "/memory/", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file");
    }
  }
  return best;
}

namespace {

// What RLIMIT_AS (ulimit -v) still allows: the limit less the address space
// in use (VmSize) and the BLAS reserve; -1 without a limit.
double address_space_headroom() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return -1.0;
  const double size = proc_kb("/proc/self/status", "VmSize:");
  if (size < 0) return -1.0;
  return std::max(0.0, static_cast<double>(rl.rlim_cur) - size - detail::blas_reserve_bytes());
}

}  // namespace

double detail::blas_reserve_bytes() {
  if (openblas_get_num_threads == nullptr) return 0.0;
  const double threads = std::max(1, openblas_get_num_threads()) +
                         std::min(8u, std::max(1u, std::thread::hardware_concurrency()));  // parallel.hpp's rule
  return threads * 128.0 * 1024.0 * 1024.0;
}

std::size_t available_memory_bytes() {
  double bytes = proc_kb("/proc/meminfo", "MemAvailable:");
  for (double room : {detail::cgroup_headroom("/proc/self/cgroup", "/sys/fs/cgroup"), address_space_headroom()})
    if (room >= 0) bytes = bytes < 0 ? room : std::min(bytes, room);
  // 0 means "unknown"; a limit with no room left at all still reads as 1 byte.
  if (bytes < 0) return 0;
  return bytes < 1.0 ? std::size_t{1} : static_cast<std::size_t>(bytes);
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
