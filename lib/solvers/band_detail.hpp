#pragma once
// Library-internal entry of the matrix-free band (lib/solvers/band_matrix_free.cpp).
#include <vector>

#include "sgdstab/band.hpp"

namespace sgdstab::detail {

// stability_band_region with lambda_max(H) known exactly (lambda_max > 0: a
// Geometry's, whose reduced factor is the model): it replaces the Lanczos
// bound on lambda_max(H) in momentum's sides (theory/band.md, section 6)
// and in the certified lower side's Weyl bound (eq. 8'', section 5.3),
// which are loose on flat spectra. 0: not known.
std::vector<std::vector<BandResult>> band_region_known_top(const LinearizedModel& model,
                                                           const std::vector<Sampling>& schemes,
                                                           const std::vector<Index>& batches, const BandOptions& o,
                                                           double lambda_max);

}  // namespace sgdstab::detail
