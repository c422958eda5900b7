#pragma once
// The benchmarks' main: Google Benchmark's, with the machine in the context
// block (sgdstab/machine.hpp: CPU model, BLAS and its kernel set,
// OPENBLAS_CORETYPE, threads), so every recorded figure names where it ran.
#include <benchmark/benchmark.h>

#include <string>

#include "sgdstab/machine.hpp"

#define SGDSTAB_BENCHMARK_MAIN()                                                                    \
  int main(int argc, char** argv) {                                                                 \
    const sgdstab::MachineInfo m = sgdstab::machine_info();                                         \
    benchmark::AddCustomContext("sgdstab_cpu", m.cpu);                                              \
    benchmark::AddCustomContext("sgdstab_blas", m.blas);                                            \
    benchmark::AddCustomContext("sgdstab_blas_core", m.blas_core);                                  \
    benchmark::AddCustomContext("sgdstab_blas_threads", std::to_string(m.blas_threads));            \
    benchmark::AddCustomContext("sgdstab_openblas_coretype",                                        \
                                m.openblas_coretype.empty() ? "(unset)" : m.openblas_coretype);     \
    benchmark::AddCustomContext("sgdstab_library_threads", std::to_string(m.library_threads));      \
    benchmark::Initialize(&argc, argv);                                                             \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;                               \
    benchmark::RunSpecifiedBenchmarks();                                                            \
    benchmark::Shutdown();                                                                          \
    return 0;                                                                                       \
  }                                                                                                 \
  static_assert(true, "")
