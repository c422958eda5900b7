#pragma once
// Internal: the pieces of available_memory_bytes() (sgdstab/memory.hpp),
// separate so that tests can give them a file tree of their own.
#include <string>

namespace sgdstab::detail {

/// What the memory cgroup of a process still allows, in bytes: limit -
/// (usage - inactive file cache, as `docker stats` and Kubernetes' working
/// set count it), the least over the cgroup, its ancestors up to the
/// hierarchy's root, and the controllers listed in `proc_cgroup` (a
/// /proc/PID/cgroup file): cgroup v2 ("0::/path": root/path/memory.max,
/// memory.current, memory.stat's inactive_file) and v1
/// ("N:...memory...:/path": root/memory/path/memory.limit_in_bytes,
/// memory.usage_in_bytes, total_inactive_file). Folders that are not there
/// (outside a container's namespace) are passed over. -1 when no limit is
/// set ("max", or v1's ~2^63).
double cgroup_headroom(const std::string& proc_cgroup, const std::string& root);

/// Address space kept for OpenBLAS under RLIMIT_AS: one 128 MiB buffer for
/// each BLAS thread and each of the library's own threads (which call the
/// BLAS in parallel loops); 0 with another BLAS. Debian 12's OpenBLAS
/// (0.3.21) retries a buffer allocation that fails forever (OpenBLAS issue
/// 5289, fixed in 0.3.30): a budget that left it no room would hang the
/// program rather than fail (docs/reliability.md, "Memory").
double blas_reserve_bytes();

/// OpenBLAS's thread count; 0 when linked against another BLAS (machine.cpp,
/// where OpenBLAS's introspection functions are declared weak).
int openblas_threads();

}  // namespace sgdstab::detail
