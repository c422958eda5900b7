#pragma once
// Internal: R = A^{-1/2} D A^{-1/2} of a geometry applied in single
// precision (strmm/ssyrk at twice the double rate), for the early
// applications of the mixed-precision eigensolver (theory/region.md,
// section 7). Input and output are float (the solver's single-precision
// subspace); the result carries a relative error of about 1e-6 and is never
// used to certify an eigenvalue.
#include "operators/apply.hpp"
#include "sgdstab/geometry.hpp"

namespace sgdstab::detail {

/// y = R x in single precision; the returned function owns its scratch and
/// holds a reference to g (which must outlive it).
LowApplyFn low_precision_pencil_r(const Geometry& g);

/// Bytes low_precision_pencil_r allocates for an nc x r factor (the factor, two nc x r and three r x r float matrices).
double low_precision_pencil_bytes(Eigen::Index nc, Eigen::Index r);

}  // namespace sgdstab::detail
