// Sampling factors: theory/sampling.md (eq. 3 and the table in section 2).
#include "sgdstab/sampling.hpp"

#include "sgdstab/errors.hpp"

namespace sgdstab {

SamplingFactors sampling_factors(Sampling scheme, Index n, Index B) {
  detail::require(n >= 1, "sampling_factors", "samples must be >= 1, got " + std::to_string(n));
  detail::require(B >= 1 && B <= n, "sampling_factors",
                  "batch size B must satisfy 1 <= B <= n = " + std::to_string(n) + ", got B = " +
                      std::to_string(B));
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

std::string to_string(Sampling scheme) {
  switch (scheme) {
    case Sampling::without_replacement: return "without";
    case Sampling::with_replacement: return "with";
    case Sampling::bernoulli: return "bernoulli";
  }
  return "unknown";
}

Sampling parse_sampling(std::string_view text) {
  if (text == "without") return Sampling::without_replacement;
  if (text == "with") return Sampling::with_replacement;
  if (text == "bernoulli") return Sampling::bernoulli;
  throw sgdstab::invalid_argument("sampling: expected one of without|with|bernoulli, got '" +
                                  std::string(text) + "'");
}

}  // namespace sgdstab
