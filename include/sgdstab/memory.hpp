#pragma once
/// \file memory.hpp
/// \brief Memory estimates made before large allocations.
///
/// Every routine that allocates O(size^2) storage first estimates its peak
/// and calls check_memory(), so that a problem that would not fit fails with
/// sgdstab::resource_error naming the sizes instead of crashing the process.
#include <cstddef>
#include <string>

namespace sgdstab {

/// Bytes this process may still allocate: the least of MemAvailable
/// (/proc/meminfo), what its memory cgroup still allows (v2 memory.max or
/// v1 memory.limit_in_bytes, less the usage without inactive file cache:
/// containers, Slurm jobs) and what RLIMIT_AS (`ulimit -v`) still allows
/// beyond the address space in use and a reserve for OpenBLAS's buffers
/// (128 MiB per BLAS thread and per library thread); 0 when none can be
/// read (then no check is made). docs/reliability.md, "Memory".
std::size_t available_memory_bytes();

/// \throws sgdstab::resource_error when `bytes` exceeds `limit` (or, when
/// limit == 0, the available memory). `what` names the computation.
/// With limit == 0, a request of at most kMemoryCheckFloor (below) bytes passes
/// without reading /proc/meminfo: routines called in training loops (an
/// MLP's forward pass) check every call, and reading the file each time
/// cost more than the pass.
void check_memory(double bytes, const std::string& what, double limit = 0);

/// Requests this small (64 MiB) are not compared with the available memory.
inline constexpr double kMemoryCheckFloor = 64.0 * 1024.0 * 1024.0;

/// Human-readable byte count ("1.5 GiB").
std::string format_bytes(double bytes);

}  // namespace sgdstab
