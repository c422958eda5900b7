// Benchmarks of the model layer (figures recorded in docs/performance.md).
//
//   build/bench/sgdstab_bench_models
//
// The Fashion-MNIST replication's network: 784 -> 1024 (relu, biases) -> 4,
// on n Gaussian inputs (the cost does not depend on the pixel values).
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include "sgdstab/sgdstab.hpp"

namespace {

sgdstab::Mlp replication_net() {
  sgdstab::MlpSpec spec;
  spec.widths = {784, 1024, 4};
  spec.activations = {sgdstab::Activation::relu};
  spec.bias = true;
  return sgdstab::Mlp(spec, 1);
}

// NTK Gram from the layer structure: (nc)^2 (m_1 + m_0 / c^2 + ...) flops,
// reported as FLOP/s of the two dominant SYRKs (D_1 D_1^T and X X^T).
void BM_Gram(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const sgdstab::Mlp net = replication_net();
  const Eigen::MatrixXd x = sgdstab::gaussian_inputs(n, 784, 3);
  for (auto _ : state) benchmark::DoNotOptimize(net.gram(x).data());
  const double nc = 4.0 * static_cast<double>(n);
  state.counters["FLOP/s"] = benchmark::Counter(
      nc * nc * 1024.0 + static_cast<double>(n * n) * (784.0 + 1024.0), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gram)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);

// One vector-Jacobian product J^T u (the Levenberg-Marquardt step).
void BM_Vjp(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const sgdstab::Mlp net = replication_net();
  const Eigen::MatrixXd x = sgdstab::gaussian_inputs(n, 784, 3);
  const Eigen::VectorXd u = Eigen::VectorXd::Ones(4 * n);
  for (auto _ : state) benchmark::DoNotOptimize(net.vjp(x, u).data());
}
BENCHMARK(BM_Vjp)->Arg(1024)->Unit(benchmark::kMillisecond);

}  // namespace

SGDSTAB_BENCHMARK_MAIN();
