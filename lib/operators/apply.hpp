#pragma once
// An operator as a function on raw vectors (internal): how the operators
// layer hands an application of R (theory/region.md) to the solvers, in
// double and in single precision (section 7).
#include <functional>

namespace sgdstab::detail {

/// y = R x for x, y of the operator's dimension m.
using ApplyFn = std::function<void(const double* x, double* y)>;
/// The same in single precision (theory/region.md, section 7).
using LowApplyFn = std::function<void(const float* x, float* y)>;

}  // namespace sgdstab::detail
