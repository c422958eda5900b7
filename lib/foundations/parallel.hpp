#pragma once
// Internal: the O(n c r + r^2) loops around an application of R (packing,
// the c x c blocks, the stacked rows) on the machine's cores. BLAS runs the
// products on all cores already; left single-threaded, these loops were
// about a sixth of an application at nC = 4096 (theory/operator.md, section 4).
#include <Eigen/Core>
#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace sgdstab::detail {

/// The library's own threads: hardware_concurrency(), at most 8 (the
/// ranges of range_parts; the BLAS reserve of memory.cpp counts them).
inline Eigen::Index library_threads() {
  return std::min<Eigen::Index>(
      8, std::max<Eigen::Index>(1, static_cast<Eigen::Index>(std::thread::hardware_concurrency())));
}

/// How many ranges parallel_ranges uses for count items in chunks of at least min_chunk.
inline Eigen::Index range_parts(Eigen::Index count, Eigen::Index min_chunk) {
  return std::max<Eigen::Index>(1, std::min<Eigen::Index>(library_threads(), count / std::max<Eigen::Index>(min_chunk, 1)));
}

/// Calls f(t, lo, hi) for t = 0 .. parts - 1 on the ranges
/// [count t / parts, count (t + 1) / parts), part 0 on the calling thread.
/// An exception of a part (std::bad_alloc under a memory limit) is rethrown
/// here once every part has ended (of several, the lowest part's); a
/// thread that cannot be started (std::system_error: no room for its
/// stack) leaves its parts to the calling thread. Before, either ended the
/// process in std::terminate (docs/reliability.md, "Memory").
template <class F>
void run_parts(Eigen::Index count, Eigen::Index parts, F&& f) {
  if (parts <= 1) {
    f(Eigen::Index{0}, Eigen::Index{0}, count);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(parts));
  auto part = [&f, &errors, parts, count](Eigen::Index t) {
    try {
      f(t, count * t / parts, count * (t + 1) / parts);
    } catch (...) {
      errors[static_cast<std::size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  Eigen::Index started = 1;
  try {
    workers.reserve(static_cast<std::size_t>(parts - 1));
    for (; started < parts; ++started) workers.emplace_back(part, started);
  } catch (...) {  // the parts from `started` on run below, on this thread
  }
  part(0);
  for (Eigen::Index t = started; t < parts; ++t) part(t);
  for (std::thread& w : workers) w.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Calls f(lo, hi) on disjoint ranges covering [0, count), on up to
/// hardware_concurrency() threads (at most 8), each range at least
/// min_chunk long; one range, on the calling thread, when count is small.
/// f must write only what its range owns; what it throws reaches the caller
/// (run_parts).
template <class F>
void parallel_ranges(Eigen::Index count, Eigen::Index min_chunk, F&& f) {
  run_parts(count, range_parts(count, min_chunk), [&f](Eigen::Index, Eigen::Index lo, Eigen::Index hi) { f(lo, hi); });
}

/// Vector-valued sums: part(lo, hi, acc) adds its range's contributions into
/// acc (width doubles, zeroed); the parts' vectors are added in the order of
/// the ranges: deterministic for a given core count.
template <class F>
std::vector<double> parallel_sums(Eigen::Index count, Eigen::Index min_chunk, Eigen::Index width, F&& part) {
  const Eigen::Index parts = range_parts(count, min_chunk);
  const std::size_t w = static_cast<std::size_t>(width);
  std::vector<double> acc(static_cast<std::size_t>(parts) * w, 0.0);
  run_parts(count, parts, [&](Eigen::Index t, Eigen::Index lo, Eigen::Index hi) {
    part(lo, hi, acc.data() + static_cast<std::size_t>(t) * w);
  });
  for (Eigen::Index t = 1; t < parts; ++t)
    for (std::size_t i = 0; i < w; ++i) acc[i] += acc[static_cast<std::size_t>(t) * w + i];
  acc.resize(w);
  return acc;
}

/// The sum of part(lo, hi) over the ranges of parallel_ranges, added in the
/// order of the ranges: deterministic for a given core count.
template <class F>
double parallel_sum(Eigen::Index count, Eigen::Index min_chunk, F&& part) {
  return parallel_sums(count, min_chunk, 1, [&part](Eigen::Index lo, Eigen::Index hi, double* acc) {
    *acc = part(lo, hi);
  })[0];
}

/// The first column of each part when the lower triangle of an r x r matrix
/// (column l holds r - l entries) is split into `parts` parts of nearly equal
/// size; bounds.front() = 0, bounds.back() = r.
inline std::vector<Eigen::Index> triangle_bounds(Eigen::Index r, Eigen::Index parts) {
  std::vector<Eigen::Index> bounds{0};
  const double total = 0.5 * static_cast<double>(r) * static_cast<double>(r + 1);
  double acc = 0.0;
  Eigen::Index part = 1;
  for (Eigen::Index l = 0; l < r && part < parts; ++l) {
    acc += static_cast<double>(r - l);
    if (acc >= total * static_cast<double>(part) / static_cast<double>(parts)) {
      bounds.push_back(l + 1);
      ++part;
    }
  }
  bounds.push_back(r);
  return bounds;
}

/// f(l0, l1) on column ranges of an r x r lower triangle of nearly equal
/// area, in parallel when the triangle is large (r >= 512); packed
/// coordinates of column l start at packed_offset(l, r).
template <class F>
void parallel_lower_columns(Eigen::Index r, F&& f) {
  const Eigen::Index parts = r >= 512 ? library_threads() : 1;
  const std::vector<Eigen::Index> bounds = triangle_bounds(r, parts);
  const Eigen::Index count = static_cast<Eigen::Index>(bounds.size()) - 1;
  parallel_ranges(count, 1, [&](Eigen::Index lo, Eigen::Index hi) {
    for (Eigen::Index part = lo; part < hi; ++part) f(bounds[part], bounds[part + 1]);
  });
}

/// Offset of column l's first entry (the diagonal) in the packed lower triangle of an r x r matrix.
inline Eigen::Index packed_offset(Eigen::Index l, Eigen::Index r) { return l * r - l * (l - 1) / 2; }

}  // namespace sgdstab::detail
