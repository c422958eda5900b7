#pragma once
// Internal: the CUDA backend of the core solver (theory/gpu.md). Compiled
// only with SGDSTAB_HAVE_CUDA (CMake SGDSTAB_WITH_CUDA); without it the
// functions below say so (lib/operators/device.cpp).
#include <memory>

#include "operators/apply.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::detail {

/// With options.device == cuda: sgdstab::invalid_argument naming why no GPU
/// is usable (checked up front, also for problems small enough for the
/// dense CPU method, which then runs on the CPU and says so).
void require_device(const SolverOptions& options);

/// GPU memory (bytes) the pencil's R needs for this geometry (gpu_pencil_r).
double gpu_pencil_bytes(const Geometry& g);

/// y = R x on the GPU, R = A^{-1/2} D A^{-1/2} in packed coordinates (the
/// operator geometry_family applies on the CPU): Z, its work copies and the
/// r x r matrices on the device; one application uploads S (r x r), runs
/// Z S, the n batched c x c blocks Z_i S Z_i^T and their products with Z_i
/// (strided-batched GEMMs), Z^T U, and downloads the r x r result; packing
/// and the A^{-1/2} scaling stay on the host.
/// \throws sgdstab::resource_error when the device memory cannot be allocated,
///   sgdstab::numerical_error when a CUDA or cuBLAS call fails.
ApplyFn gpu_pencil_r(const Geometry& g);

}  // namespace sgdstab::detail
