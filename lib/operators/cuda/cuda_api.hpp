#pragma once
// Internal: the CUDA runtime and cuBLAS, opened at their first use
// (theory/gpu.md, section 4). Nothing of CUDA is linked into the binaries:
// a build with the CUDA backend starts and runs on machines without the CUDA
// libraries, and a process that never asks for a GPU never maps them. This
// module owns the function table; compiled only with SGDSTAB_HAVE_CUDA.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

namespace sgdstab::detail::cuda {

/// The CUDA runtime functions the backend calls.
struct Runtime {
  decltype(&::cudaGetDeviceCount) GetDeviceCount;
  decltype(&::cudaGetDevice) GetDevice;
  decltype(&::cudaGetDeviceProperties) GetDeviceProperties;
  decltype(&::cudaMemGetInfo) MemGetInfo;
  decltype(&::cudaGetErrorString) GetErrorString;
  decltype(&::cudaGetLastError) GetLastError;
  decltype(&::cudaMalloc) Malloc;
  decltype(&::cudaFree) Free;
  decltype(&::cudaMemcpy) Memcpy;
};

/// The cuBLAS functions the backend calls.
struct Blas {
  decltype(&::cublasCreate) Create;
  decltype(&::cublasDestroy) Destroy;
  decltype(&::cublasDgemm) Dgemm;
  decltype(&::cublasDgemmStridedBatched) DgemmStridedBatched;
};

/// The runtime, opened on the first call (thread-safe, once per process);
/// nullptr when it cannot be opened or lacks a function, with the reason in
/// *why ("the CUDA runtime (libcudart.so.13) cannot be loaded: ...").
const Runtime* runtime(std::string* why);

/// cuBLAS, the same way (opened only when a GPU is used).
const Blas* blas(std::string* why);

}  // namespace sgdstab::detail::cuda
