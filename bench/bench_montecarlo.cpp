// Benchmarks of the Monte Carlo module (figures recorded in docs/performance.md).
//
//   build/bench/sgdstab_bench_montecarlo
//
// Linearized SGD in reduced coordinates, r = 100 (n = 100 samples, C = 1,
// full-rank Jacobian 100 x 120), M = 10^4 trajectories, B = 10: each step is
// two (n C) x r x M GEMMs plus the batch masks. Reported: trajectory-steps per
// second and the GEMM throughput of the step, beside a plain GEMM of the same
// shape (Eigen, -march=native -fopenmp) as the yardstick.
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <Eigen/Dense>
#include <random>

#include "sgdstab/sgdstab.hpp"

namespace {

sgdstab::Geometry bench_geometry() {
  std::mt19937_64 gen(5);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd j(100, 120);
  for (Eigen::Index i = 0; i < j.size(); ++i) j.data()[i] = nd(gen);
  return sgdstab::Geometry::from_jacobian(j, 1);
}

void BM_Simulate(benchmark::State& state) {
  const sgdstab::Geometry g = bench_geometry();
  sgdstab::SimulationOptions o;
  o.batch = 10;
  o.schedule = static_cast<sgdstab::Schedule>(state.range(0));
  o.lr = 0.5 * sgdstab::stability_threshold(g, 10).eta_star;
  o.steps = 20;
  o.trajectories = 10000;
  double flops = 0.0;
  for (auto _ : state) {
    const auto res = sgdstab::simulate_linearized(g, o);
    flops += res.flops;
    benchmark::DoNotOptimize(res.squared_norm.back().mean);
  }
  state.SetLabel(sgdstab::to_string(o.schedule));
  state.counters["traj_steps/s"] = benchmark::Counter(static_cast<double>(o.steps * o.trajectories),
                                                      benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Simulate)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

// The yardstick: one (100 x 100) x (100 x 10^4) product, as in each half-step.
void BM_GemmReference(benchmark::State& state) {
  const Eigen::MatrixXd z = Eigen::MatrixXd::Random(100, 100), d = Eigen::MatrixXd::Random(100, 10000);
  Eigen::MatrixXd y(100, 10000);
  for (auto _ : state) {
    y.noalias() = z * d;
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * 100 * 100 * 10000, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GemmReference)->Unit(benchmark::kMillisecond);

}  // namespace

SGDSTAB_BENCHMARK_MAIN();
