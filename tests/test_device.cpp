// The device of eta*'s operator applications (issue #13, theory/gpu.md):
// what the library reports and refuses on any machine, and parity of the
// GPU path with the CPU path where a GPU is visible (skipped, with the
// reason printed, where none is).
#include <gtest/gtest.h>

#include <string>

#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"

using Eigen::MatrixXd;
using sgdstab::Device;
using sgdstab::Sampling;

namespace {

// A Geometry whose packed dimension (r = 48, m = 1176) exceeds the dense
// method's 600, so eta* takes the matrix-free path that the GPU serves.
sgdstab::Geometry lanczos_geometry(sgdstab::Index c, unsigned seed) {
  const sgdstab::Index n = 48 / c + 2;
  MatrixXd j = ref::gaussian(n * c, 48, seed);
  for (sgdstab::Index i = 0; i < n; ++i) j.middleRows(i * c, c) *= 0.5 + 0.1 * static_cast<double>(i % 7);
  return sgdstab::Geometry::from_jacobian(j, c);
}

sgdstab::SolverOptions on(Device d) {
  sgdstab::SolverOptions o;
  o.device = d;
  return o;
}

}  // namespace

TEST(Gpu, StatusExplainsItself) {
  const sgdstab::GpuStatus s = sgdstab::gpu_status();
  if (s.usable) {
    EXPECT_TRUE(s.built);
    EXPECT_FALSE(s.name.empty());
    EXPECT_GT(s.total_bytes, 0.0);
    EXPECT_LE(s.free_bytes, s.total_bytes);
    EXPECT_TRUE(s.reason.empty());
  } else {
    EXPECT_FALSE(s.reason.empty());  // "no CUDA backend" or what the CUDA runtime said
    std::cout << "GPU not usable here: " << s.reason << "\n";
  }
}

TEST(Gpu, AutomaticRunsWhereItCanAndCudaRefusesWhereItCannot) {
  const sgdstab::GpuStatus s = sgdstab::gpu_status();
  const sgdstab::Geometry g = lanczos_geometry(2, 301);
  const sgdstab::ThresholdResult cpu = sgdstab::stability_threshold(g, 4, Sampling::with_replacement, on(Device::cpu));
  const sgdstab::ThresholdResult aut =
      sgdstab::stability_threshold(g, 4, Sampling::with_replacement, on(Device::automatic));
  ASSERT_TRUE(cpu.converged() && aut.converged());
  EXPECT_EQ(cpu.report.device, Device::cpu);
  EXPECT_EQ(aut.report.device, s.usable ? Device::cuda : Device::cpu);
  EXPECT_REL_NEAR(aut.eta_star, cpu.eta_star, 1e-10);
  // A problem too large for any GPU: automatic stays on the CPU and says why; cuda refuses.
  std::string note;
  EXPECT_EQ(sgdstab::resolve_device(Device::automatic, 1e30, &note), Device::cpu);
  EXPECT_FALSE(note.empty());
  EXPECT_EQ(sgdstab::resolve_device(Device::cpu, 1e30), Device::cpu);
  try {
    sgdstab::resolve_device(Device::cuda, 1e30);
    ADD_FAILURE() << "cuda accepted a problem of 1e30 bytes";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("device cuda: "), std::string::npos) << e.what();
  }
  if (!s.usable) {
    // Every entry point refuses up front, also where the dense CPU method would have served.
    const sgdstab::Geometry small = sgdstab::Geometry::from_jacobian(ref::gaussian(8, 5, 302), 1);
    EXPECT_THROW(sgdstab::stability_threshold(small, 2, Sampling::with_replacement, on(Device::cuda)),
                 sgdstab::invalid_argument);
    EXPECT_THROW(sgdstab::threshold_curve(g, {1, 2}, Sampling::with_replacement, on(Device::cuda)),
                 sgdstab::invalid_argument);
    EXPECT_THROW(sgdstab::stability_region(g, {Sampling::bernoulli}, {1, 2}, on(Device::cuda)),
                 sgdstab::invalid_argument);
  }
}

TEST(Gpu, CudaMatchesTheCpuPath) {
  const sgdstab::GpuStatus s = sgdstab::gpu_status();
  if (!s.usable) GTEST_SKIP() << s.reason;
  for (sgdstab::Index c : {1, 2, 3}) {
    const sgdstab::Geometry g = lanczos_geometry(c, 310 + static_cast<unsigned>(c));
    for (Sampling sc : {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli}) {
      const auto cpu = sgdstab::stability_threshold(g, 3, sc, on(Device::cpu));
      const auto gpu = sgdstab::stability_threshold(g, 3, sc, on(Device::cuda));
      ASSERT_TRUE(cpu.converged() && gpu.converged()) << gpu.report.message;
      EXPECT_EQ(gpu.report.device, Device::cuda);
      EXPECT_REL_NEAR(gpu.eta_star, cpu.eta_star, 1e-10) << "c = " << c << ", " << sgdstab::to_string(sc);
      EXPECT_LE(std::abs(gpu.report.matvecs - cpu.report.matvecs), 3);
    }
    const std::vector<sgdstab::Index> batches = {1, 2, 5, g.samples()};
    const auto rc = sgdstab::stability_region(g, {Sampling::without_replacement, Sampling::bernoulli}, batches,
                                              on(Device::cpu));
    const auto rg = sgdstab::stability_region(g, {Sampling::without_replacement, Sampling::bernoulli}, batches,
                                              on(Device::cuda));
    ASSERT_TRUE(rc.converged() && rg.converged());
    EXPECT_EQ(rg.report.device, Device::cuda);
    for (std::size_t k = 0; k < rc.curves.size(); ++k)
      for (std::size_t q = 0; q < batches.size(); ++q)
        EXPECT_REL_NEAR(rg.curves[k].points[q].eta_star, rc.curves[k].points[q].eta_star, 1e-10);
  }
}
