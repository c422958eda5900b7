#include "sgdstab/random.hpp"

#include <cmath>

namespace sgdstab {

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double u = uniform(), v = uniform();
  const double radius = std::sqrt(-2.0 * std::log(1.0 - u));  // 1 - u in (0, 1]
  const double angle = 6.283185307179586 * v;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

std::uint64_t Rng::below(std::uint64_t n) {
  // Rejection of the 2^64 mod n smallest values makes x mod n exactly uniform
  // (the arc4random_uniform method).
  const std::uint64_t threshold = (0 - n) % n;
  for (;;) {
    const std::uint64_t x = bits();
    if (x >= threshold) return x % n;
  }
}

}  // namespace sgdstab
