#include "sgdstab/memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "foundations/memory_detail.hpp"
#include "foundations/parallel.hpp"
#include "sgdstab/errors.hpp"

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
  auto consider = [&](const std::string& dir, const char* limit_file, const char* usage_file, const char* inactive) {
    const double limit = cgroup_number(dir + limit_file);
    if (limit < 0 || limit >= 0x1p60) return;  // no folder here, or no limit ("max"; v1 writes about 2^63)
    const double usage = cgroup_number(dir + usage_file);
    if (usage < 0) return;
    const double used = std::max(0.0, usage - cgroup_stat(dir + "memory.stat", inactive));
    const double room = std::max(0.0, limit - used);
    best = best < 0 ? room : std::min(best, room);
  };
  // The cgroup and every ancestor up to the hierarchy's root: a limit is
  // often set on a parent (Slurm's job and step, a systemd slice, a
  // Kubernetes pod) with the processes in a child.
  auto walk = [&](const std::string& base, const std::string& path, const char* limit_file, const char* usage_file,
                  const char* inactive) {
    std::string p = path;
    while (!p.empty() && p.back() == '/') p.pop_back();
    for (;;) {
      consider(base + p + "/", limit_file, usage_file, inactive);
      if (p.empty()) break;
      p.erase(p.rfind('/') == std::string::npos ? 0 : p.rfind('/'));
    }
  };
  while (std::getline(in, line)) {
    const std::size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty())  // v2: "0::/path"
      walk(root, path, "memory.max", "memory.current", "inactive_file");
    else if (("," + controllers + ",").find(",memory,") != std::string::npos)  // v1
      walk(root + "/memory", path, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file");
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
  const int blas = openblas_threads();
  if (blas <= 0) return 0.0;  // not OpenBLAS
  return static_cast<double>(blas + library_threads()) * 128.0 * 1024.0 * 1024.0;
}

std::size_t available_memory_bytes() {
  double bytes = proc_kb("/proc/meminfo", "MemAvailable:");
  for (double room : {detail::cgroup_headroom("/proc/self/cgroup", "/sys/fs/cgroup"), address_space_headroom()})
    if (room >= 0) bytes = bytes < 0 ? room : std::min(bytes, room);
  // 0 means "unknown"; a limit with no room left at all still reads as 1 byte.
  if (bytes < 0) return 0;
  if (bytes >= 0x1p63) return std::size_t{1} << 63;  // a conversion beyond size_t's range is undefined
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
