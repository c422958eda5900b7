// machine_info (include/sgdstab/machine.hpp) against independent readings:
// the CPU model as grep reads /proc/cpuinfo, the thread count as the C++
// runtime reports it, OPENBLAS_CORETYPE as set here; and the CLI's
// "performance" block equal to the library's record.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "sgdstab/machine.hpp"

namespace {

std::string shell_line(const char* command) {
  std::string out;
  if (FILE* p = popen(command, "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

TEST(Machine, InfoMatchesIndependentReadings) {
  const std::string grep = shell_line("grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//'");
  const sgdstab::MachineInfo m = sgdstab::machine_info();
  EXPECT_EQ(m.cpu, grep.empty() ? "unknown" : grep);
  EXPECT_EQ(m.logical_cpus, std::thread::hardware_concurrency());
  EXPECT_GE(m.library_threads, 1u);
  EXPECT_LE(m.library_threads, 8u);
  ASSERT_FALSE(m.blas.empty());
  if (m.blas != "unknown (not OpenBLAS)") {  // OpenBLAS: its kernel set and threads are known
    EXPECT_NE(m.blas.find("OpenBLAS"), std::string::npos) << m.blas;
    EXPECT_FALSE(m.blas_core.empty());
    EXPECT_GE(m.blas_threads, 1);
  } else {
    EXPECT_TRUE(m.blas_core.empty());
    EXPECT_EQ(m.blas_threads, 0);
  }
  const char* before = std::getenv("OPENBLAS_CORETYPE");
  const std::string saved = before ? before : "";
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  EXPECT_EQ(sgdstab::machine_info().openblas_coretype, "Haswell");
  unsetenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(sgdstab::machine_info().openblas_coretype, "");
  if (before) setenv("OPENBLAS_CORETYPE", saved.c_str(), 1);
}
