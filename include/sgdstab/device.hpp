#pragma once
/// \file device.hpp
/// \brief Where the core solver's operator applications run: the CPU, or a
/// CUDA GPU through cuBLAS when this build has the CUDA backend (CMake
/// SGDSTAB_WITH_CUDA) and a GPU is visible (theory/gpu.md).
///
/// SolverOptions::device asks (cpu, cuda, automatic); every result's
/// SolveReport::device says what actually ran. `cuda` without a usable GPU,
/// or for a problem the GPU's free memory cannot hold, is an error naming the
/// reason; `automatic` runs on the GPU when it is usable and the problem fits,
/// on the CPU otherwise (silently correct: the same answer).
///
/// \code
/// sgdstab::GpuStatus s = sgdstab::gpu_status();
/// if (!s.usable) std::cout << "CPU only: " << s.reason << "\n";
/// sgdstab::SolverOptions o;
/// o.device = sgdstab::Device::automatic;
/// auto t = sgdstab::threshold(g, 8, sgdstab::Sampling::without_replacement, o);
/// std::cout << sgdstab::to_string(t.report.device) << "\n";   // "cpu" or "cuda"
/// \endcode
#include <string>

#include "sgdstab/types.hpp"

namespace sgdstab {

/// What the CUDA backend can use now (queried on each call).
struct GpuStatus {
  bool built = false;   ///< this build has the CUDA backend
  bool usable = false;  ///< built, and a GPU is visible to the CUDA runtime
  int device = -1;      ///< the CUDA device used (the current one, 0 unless set)
  std::string name;     ///< e.g. "NVIDIA H200"
  double free_bytes = 0.0, total_bytes = 0.0;  ///< cudaMemGetInfo
  std::string reason;   ///< why not usable (empty when usable)
};
GpuStatus gpu_status();

/// The device a solve asking for `requested` runs on, for a problem that
/// needs `gpu_bytes` of GPU memory: cpu -> cpu; cuda -> cuda, or
/// sgdstab::invalid_argument naming why not (not built, no GPU, too large
/// for its free memory); automatic -> cuda when usable and it fits (with 10 %
/// to spare), else cpu, with the reason in *note when given.
Device resolve_device(Device requested, double gpu_bytes, std::string* note = nullptr);

}  // namespace sgdstab
