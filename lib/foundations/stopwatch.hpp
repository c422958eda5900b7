#pragma once
// Wall-clock seconds since construction, for the reports' `seconds` (solver.hpp).
#include <chrono>

namespace sgdstab::detail {

class Stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace sgdstab::detail

namespace sgdstab::detail {

/// f()'s result with report.seconds set to the call's wall time.
template <class F>
auto timed(F&& f) {
  const Stopwatch watch;
  auto r = f();
  r.report.seconds = watch.seconds();
  return r;
}

}  // namespace sgdstab::detail
