#pragma once
/// \file random.hpp
/// \brief A small, portable pseudo-random generator.
///
/// The C++ standard fixes the engines (std::mt19937_64) but not the
/// distributions: std::normal_distribution gives different numbers under
/// libstdc++ and libc++. sgdstab promises that a seed gives the same data,
/// initialization and batches on every platform, so it uses its own
/// generator: SplitMix64 for the bits, the top 53 bits for uniforms, and the
/// Box-Muller transform for Gaussians (theory/data.md, section "Random numbers").
///
/// \code
/// sgdstab::Rng rng(42);
/// double u = rng.uniform();       // in [0, 1)
/// double z = rng.normal();        // N(0, 1)
/// auto k = rng.below(10);         // uniform in {0, ..., 9}
/// \endcode
#include <cstdint>

namespace sgdstab {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  /// The next 64 random bits (SplitMix64).
  std::uint64_t bits() {
    state_ += kGolden;
    return mix(state_);
  }
  /// SplitMix64's finalizer: a bijective scramble of 64 bits.
  static std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// The seed of independent stream `index` for `purpose` under `seed`
  /// (e.g. one stream per Monte Carlo trajectory).
  static std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t index, std::uint64_t purpose) {
    return mix(seed ^ (index * kGolden) ^ (purpose * 0xD1B54A32D192ED03ULL));
  }
  /// Uniform on [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(bits() >> 11) * 0x1.0p-53; }
  /// Standard normal (Box-Muller; one of the pair is cached).
  double normal();
  /// Uniform integer in {0, ..., n-1}; n >= 1 (unbiased: rejection, then modulo).
  std::uint64_t below(std::uint64_t n);

 private:
  static constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
  std::uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace sgdstab
