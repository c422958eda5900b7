// The device of the core solver's applications: theory/gpu.md.
#include "sgdstab/device.hpp"

#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "operators/cuda_backend.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"

#ifdef SGDSTAB_HAVE_CUDA
#include "operators/cuda/cuda_api.hpp"
#endif

namespace sgdstab {

GpuStatus gpu_status() {
  GpuStatus s;
#ifdef SGDSTAB_HAVE_CUDA
  s.built = true;
  std::string why;
  const detail::cuda::Runtime* rt = detail::cuda::runtime(&why);  // opened here, at the first query
  if (rt == nullptr) {
    s.reason = "no usable GPU: " + why;
    return s;
  }
  int count = 0;
  const cudaError_t e = rt->GetDeviceCount(&count);
  if (e != cudaSuccess) {
    s.reason = std::string("no usable GPU: the CUDA runtime says '") + rt->GetErrorString(e) + "'";
    rt->GetLastError();  // clear the sticky error state
    return s;
  }
  if (count == 0) {
    s.reason = "no GPU is visible to the CUDA runtime";
    return s;
  }
  int dev = 0;
  rt->GetDevice(&dev);
  cudaDeviceProp prop{};
  std::size_t free_b = 0, total_b = 0;
  if (rt->GetDeviceProperties(&prop, dev) != cudaSuccess || rt->MemGetInfo(&free_b, &total_b) != cudaSuccess) {
    s.reason = std::string("GPU ") + std::to_string(dev) + " cannot be queried: " +
               rt->GetErrorString(rt->GetLastError());
    return s;
  }
  s.usable = true;
  s.device = dev;
  s.name = prop.name;
  s.free_bytes = static_cast<double>(free_b);
  s.total_bytes = static_cast<double>(total_b);
#else
  s.reason = "this build has no CUDA backend (configure with SGDSTAB_WITH_CUDA=ON where the CUDA toolkit is installed)";
#endif
  return s;
}

Device resolve_device(Device requested, double gpu_bytes, std::string* note) {
  if (requested == Device::cpu) return Device::cpu;
  const GpuStatus s = gpu_status();
  std::string why;
  if (!s.usable) {
    why = s.reason;
  } else if (gpu_bytes * 1.1 > s.free_bytes) {
    why = "the problem needs about " + format_bytes(gpu_bytes) + " on " + s.name + ", which has " +
          format_bytes(s.free_bytes) + " free";
  } else {
    return Device::cuda;
  }
  if (requested == Device::cuda) throw sgdstab::invalid_argument("device cuda: " + why);
  if (note) *note = "on the CPU: " + why;
  return Device::cpu;
}

namespace detail {

void require_device(const SolverOptions& options) {
  if (options.device == Device::cuda) resolve_device(Device::cuda, 0.0);
}

double gpu_pencil_bytes(const Geometry& g) {
  const double nc = static_cast<double>(g.factor().rows()), r = static_cast<double>(g.rank());
  const double n = static_cast<double>(g.samples()), c = static_cast<double>(g.outputs());
  // Z, Z S and U (n c x r each), S and the result (r x r), the c x c blocks.
  return 8.0 * (3.0 * nc * r + 2.0 * r * r + n * c * c);
}

#ifndef SGDSTAB_HAVE_CUDA
ApplyFn gpu_pencil_r(const Geometry&) {
  throw sgdstab::invalid_argument("device cuda: " + gpu_status().reason);
}
#endif

}  // namespace detail
}  // namespace sgdstab
