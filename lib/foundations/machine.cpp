// What a timing was measured on (include/sgdstab/machine.hpp). OpenBLAS's
// introspection functions are declared weak: linked against another BLAS
// they are null and the record says so.
#include "sgdstab/machine.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "foundations/memory_detail.hpp"
#include "foundations/parallel.hpp"

extern "C" {
char* openblas_get_config() __attribute__((weak));
char* openblas_get_corename() __attribute__((weak));
int openblas_get_num_threads() __attribute__((weak));
}

namespace sgdstab {

namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v.empty() ? "unknown" : v;
  }
  return "unknown";
}

}  // namespace

int detail::openblas_threads() { return openblas_get_num_threads != nullptr ? openblas_get_num_threads() : 0; }

MachineInfo machine_info() {
  MachineInfo m;
  m.cpu = cpu_model();
  m.logical_cpus = std::thread::hardware_concurrency();
  m.library_threads = static_cast<unsigned>(detail::library_threads());
  if (openblas_get_config != nullptr) {
    const char* config = openblas_get_config();
    m.blas = config ? config : "OpenBLAS";
    if (openblas_get_corename != nullptr) {
      const char* core = openblas_get_corename();
      m.blas_core = core ? core : "";
    }
    m.blas_threads = detail::openblas_threads();
  } else {
    m.blas = "unknown (not OpenBLAS)";
  }
  if (const char* env = std::getenv("OPENBLAS_CORETYPE")) m.openblas_coretype = env;
  return m;
}

}  // namespace sgdstab
