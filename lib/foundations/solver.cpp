// The types every solver shares (include/sgdstab/solver.hpp): their checks.
// SolverOptions: theory/threshold.md and theory/region.md (what each option
// controls); Momentum: theory/momentum.md.
#include "sgdstab/solver.hpp"

#include "sgdstab/options.hpp"

namespace sgdstab {

// Each field's rule is in its table (lib/foundations/options.cpp), with its default and help.
void SolverOptions::validate() const { check_fields(*this, "SolverOptions"); }

void Momentum::validate() const { check_fields(*this, "Momentum"); }

}  // namespace sgdstab
