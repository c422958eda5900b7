// Sampling factors: theory/sampling.md (eq. 3 and the table in section 2).
#include "sgdstab/sampling.hpp"

#include "foundations/check.hpp"
#include "sgdstab/errors.hpp"

namespace sgdstab {

void check_batch(Index batch, Index samples, const std::string& where) {
  detail::require(samples >= 1, where, "samples must be >= 1, got " + std::to_string(samples));
  detail::require(batch >= 1 && batch <= samples, where,
                  "batch size B must satisfy 1 <= B <= n = " + std::to_string(samples) + ", got B = " +
                      std::to_string(batch));
}

SamplingFactors sampling_factors(Sampling scheme, Index n, Index B) {
  check_batch(B, n, "sampling_factors");
  const double nd = static_cast<double>(n), Bd = static_cast<double>(B);
  switch (scheme) {
    case Sampling::without_replacement:
      if (B == n) return {1.0, 0.0};  // full batch: deterministic GD (also covers n = 1)
      return {nd * (Bd - 1.0) / (Bd * (nd - 1.0)), (nd - Bd) / (Bd * (nd - 1.0))};
    case Sampling::with_replacement:
      return {(Bd - 1.0) / Bd, 1.0 / Bd};
    case Sampling::bernoulli:
      return {1.0, (nd - Bd) / (nd * Bd)};
  }
  throw sgdstab::invalid_argument("sampling_factors: unknown sampling scheme");
}

}  // namespace sgdstab
