// The types every solver shares (include/sgdstab/solver.hpp): their checks.
// SolverOptions: theory/threshold.md and theory/region.md (what each option
// controls); Momentum: theory/momentum.md.
#include "sgdstab/solver.hpp"

#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "sgdstab/options.hpp"

namespace sgdstab {

// Each field's rule is in its table (lib/foundations/options.cpp), with its default and help.
void SolverOptions::validate() const { check_fields(*this, "SolverOptions"); }

void Momentum::validate() const {
  detail::require(std::isfinite(beta) && beta >= 0.0 && beta < 1.0, "Momentum",
                  "beta must satisfy 0 <= beta < 1, got " + detail::fmt(beta));
}

}  // namespace sgdstab
