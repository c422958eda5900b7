// The types every solver shares (include/sgdstab/solver.hpp): their checks.
// SolverOptions: theory/threshold.md and theory/region.md (what each option
// controls); Momentum: theory/momentum.md.
#include "sgdstab/solver.hpp"

#include <cmath>
#include <string>

#include "check.hpp"

namespace sgdstab {

void SolverOptions::validate() const {
  const std::string where = "SolverOptions";
  detail::require(std::isfinite(tolerance) && tolerance > 0 && tolerance < 0.1, where,
                  "tolerance must satisfy 0 < tolerance < 0.1, got " + detail::fmt(tolerance));
  detail::require(max_iterations >= 1, where,
                  "max_iterations must be >= 1, got " + std::to_string(max_iterations));
  detail::require(subspace_dimension == 0 || subspace_dimension >= 3, where,
                  "subspace_dimension must be 0 (automatic) or >= 3, got " +
                      std::to_string(subspace_dimension));
  detail::require(dense_max_dimension >= 0 && dense_fallback_max_dimension >= 0, where,
                  "dense dimensions must be >= 0");
  detail::require(mixed_precision_min_rank >= 0, where,
                  "mixed_precision_min_rank must be >= 0, got " + std::to_string(mixed_precision_min_rank));
  detail::require(std::isfinite(memory_limit_bytes) && memory_limit_bytes >= 0, where,
                  "memory_limit_bytes must be >= 0, got " + detail::fmt(memory_limit_bytes));
}

void Momentum::validate() const {
  detail::require(std::isfinite(beta) && beta >= 0.0 && beta < 1.0, "Momentum",
                  "beta must satisfy 0 <= beta < 1, got " + detail::fmt(beta));
}

}  // namespace sgdstab
