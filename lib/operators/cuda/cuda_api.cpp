// The CUDA runtime and cuBLAS opened with dlopen at their first use
// (theory/gpu.md, section 4); compiled only with SGDSTAB_HAVE_CUDA.
#include "operators/cuda/cuda_api.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

// The sonames and folder of the toolkit found at configure time (CMake reads
// them from the libraries' ELF headers).
#ifndef SGDSTAB_CUDART_SONAME
#error "SGDSTAB_CUDART_SONAME is set by CMake"
#endif

namespace sgdstab::detail::cuda {
namespace {

// The symbol a function name stands for after the headers' macros
// (cublasCreate is cublasCreate_v2): stringified after expansion.
#define SGDSTAB_CUDA_SYMBOL_(x) #x
#define SGDSTAB_CUDA_SYMBOL(x) SGDSTAB_CUDA_SYMBOL_(x)

// Opens `soname`: from $SGDSTAB_CUDA_LIB_DIR alone when it is set, else by
// the dynamic loader's search (LD_LIBRARY_PATH, ld.so.cache), then from the
// build's toolkit folder. nullptr with the reason in *why.
void* open_library(const char* soname, const char* what, std::string* why) {
  std::vector<std::string> tries;
  const char* dir = std::getenv("SGDSTAB_CUDA_LIB_DIR");
  if (dir != nullptr && *dir != '\0') {
    tries.push_back(std::string(dir) + "/" + soname);
  } else {
    tries.emplace_back(soname);
    tries.push_back(std::string(SGDSTAB_CUDA_LIBRARY_DIR) + "/" + soname);
  }
  std::string errors;
  for (const std::string& path : tries) {
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    if (!errors.empty()) errors += "; ";
    errors += e != nullptr ? e : path + ": unknown error";
  }
  *why = std::string(what) + " (" + soname + ") cannot be loaded: " + errors +
         (dir != nullptr && *dir != '\0' ? " (SGDSTAB_CUDA_LIB_DIR is set)" : "");
  return nullptr;
}

// Fills `fn` from `handle`; false, with the missing symbol in *why, when absent.
template <class F>
bool bind(void* handle, F& fn, const char* symbol, const char* soname, std::string* why) {
  fn = reinterpret_cast<F>(dlsym(handle, symbol));
  if (fn != nullptr) return true;
  *why = std::string(soname) + " has no function " + symbol + " (a CUDA older than the build's?)";
  return false;
}

struct Loaded {
  Runtime rt{};
  Blas blas{};
  bool rt_ok = false, blas_ok = false;
  std::string rt_why, blas_why;
};

Loaded& loaded() {
  static Loaded l;
  return l;
}

#define SGDSTAB_BIND(h, table, field, name, soname, why) \
  bind(h, table.field, SGDSTAB_CUDA_SYMBOL(name), soname, why)

void load_runtime() {
  Loaded& l = loaded();
  void* h = open_library(SGDSTAB_CUDART_SONAME, "the CUDA runtime", &l.rt_why);
  if (h == nullptr) return;
  const char* so = SGDSTAB_CUDART_SONAME;
  std::string* w = &l.rt_why;
  l.rt_ok = SGDSTAB_BIND(h, l.rt, GetDeviceCount, cudaGetDeviceCount, so, w) &&
            SGDSTAB_BIND(h, l.rt, GetDevice, cudaGetDevice, so, w) &&
            SGDSTAB_BIND(h, l.rt, GetDeviceProperties, cudaGetDeviceProperties, so, w) &&
            SGDSTAB_BIND(h, l.rt, MemGetInfo, cudaMemGetInfo, so, w) &&
            SGDSTAB_BIND(h, l.rt, GetErrorString, cudaGetErrorString, so, w) &&
            SGDSTAB_BIND(h, l.rt, GetLastError, cudaGetLastError, so, w) &&
            SGDSTAB_BIND(h, l.rt, Malloc, cudaMalloc, so, w) && SGDSTAB_BIND(h, l.rt, Free, cudaFree, so, w) &&
            SGDSTAB_BIND(h, l.rt, Memcpy, cudaMemcpy, so, w);
}

void load_blas() {
  Loaded& l = loaded();
  void* h = open_library(SGDSTAB_CUBLAS_SONAME, "cuBLAS", &l.blas_why);
  if (h == nullptr) return;
  const char* so = SGDSTAB_CUBLAS_SONAME;
  std::string* w = &l.blas_why;
  l.blas_ok = SGDSTAB_BIND(h, l.blas, Create, cublasCreate, so, w) &&
              SGDSTAB_BIND(h, l.blas, Destroy, cublasDestroy, so, w) &&
              SGDSTAB_BIND(h, l.blas, Dgemm, cublasDgemm, so, w) &&
              SGDSTAB_BIND(h, l.blas, DgemmStridedBatched, cublasDgemmStridedBatched, so, w);
}

}  // namespace

const Runtime* runtime(std::string* why) {
  static std::once_flag once;
  std::call_once(once, load_runtime);
  const Loaded& l = loaded();
  if (l.rt_ok) return &l.rt;
  if (why != nullptr) *why = l.rt_why;
  return nullptr;
}

const Blas* blas(std::string* why) {
  static std::once_flag once;
  std::call_once(once, load_blas);
  const Loaded& l = loaded();
  if (l.blas_ok) return &l.blas;
  if (why != nullptr) *why = l.blas_why;
  return nullptr;
}

}  // namespace sgdstab::detail::cuda
