#pragma once
/// \file machine.hpp
/// \brief What a timing was measured on: the CPU, the BLAS and the threads.
///
/// Figures from two machines of the same kind can differ by 2x (an Intel
/// Xeon against an AMD EPYC, or the same OpenBLAS with and without
/// OPENBLAS_CORETYPE), so every JSON result of the command line carries this
/// record under "performance" (cli/report.cpp) and the benchmarks print it
/// in their context (bench/).
#include <string>

namespace sgdstab {

struct MachineInfo {
  std::string cpu;              ///< "model name" of /proc/cpuinfo ("unknown" when unreadable)
  unsigned logical_cpus = 0;    ///< std::thread::hardware_concurrency()
  unsigned library_threads = 0; ///< threads of the library's own parallel loops (at most 8)
  /// The BLAS the library called: OpenBLAS's configuration string when it is
  /// OpenBLAS (openblas_get_config), else "unknown (not OpenBLAS)".
  std::string blas;
  std::string blas_core;        ///< OpenBLAS's kernel set (openblas_get_corename), "" otherwise
  int blas_threads = 0;         ///< OpenBLAS's thread count (openblas_get_num_threads), 0 otherwise
  /// The OPENBLAS_CORETYPE environment variable ("" when unset): it forces
  /// OpenBLAS's kernels, and on some machines of our kind it is set.
  std::string openblas_coretype;
};

/// The record above, read now (cheap: one read of /proc/cpuinfo).
MachineInfo machine_info();

}  // namespace sgdstab
