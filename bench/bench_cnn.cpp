// Per-sample Jacobian throughput of the LibTorch module (figures in docs/cnn.md).
//
//   build/bench/sgdstab_bench_cnn
//
// MLP 784 -> 256 (relu) -> 10 on Gaussian inputs (p = 203,530): the batched
// method of TorchMlp (one reverse pass per output, theory/cnn.md eq. 1) for the
// full Jacobian (which materializes J: 640 x 203,530 doubles = 1 GB) and for
// the Gram (per parameter block, J never whole), against the naive loop (one
// reverse pass per sample and output, gradients computed but not assembled);
// and the VGG-style CNN (1 x 28 x 28 images, channels 8,16, classifier
// 64 -> 10, p = 51,946): the batched Jacobian and Gram (c reverse passes per
// chunk to the pre-activations, unfold + batched GEMM) against the naive loop
// (Cnn::jacobian_naive), and the reduced VGG-11 (CnnSpec::vgg11(8, ...)) on
// 3 x 32 x 32 images (the CIFAR-10 shape).
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include "sgdstab/cnn.hpp"
#include "sgdstab/sgdstab.hpp"

namespace {

sgdstab::Mlp bench_mlp() {
  sgdstab::MlpSpec spec;
  spec.widths = {784, 256, 10};
  spec.activations = {sgdstab::Activation::relu};
  spec.bias = true;
  return sgdstab::Mlp(spec, 1);
}

void BM_TorchMlpJacobianBatched(benchmark::State& state) {
  const sgdstab::cnn::TorchMlp net(bench_mlp(), torch::Device(torch::kCPU));
  const Eigen::MatrixXd x = sgdstab::gaussian_inputs(state.range(0), 784, 2);
  for (auto _ : state) benchmark::DoNotOptimize(net.jacobian(x, 64).data());
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TorchMlpJacobianBatched)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_TorchMlpGramBatched(benchmark::State& state) {
  const sgdstab::cnn::TorchMlp net(bench_mlp(), torch::Device(torch::kCPU));
  const Eigen::MatrixXd x = sgdstab::gaussian_inputs(state.range(0), 784, 2);
  for (auto _ : state) benchmark::DoNotOptimize(net.gram(x).data());
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TorchMlpGramBatched)->Arg(64)->Unit(benchmark::kMillisecond);

// The naive loop: one reverse pass per (sample, output) through LibTorch's autograd.
void BM_TorchMlpJacobianNaive(benchmark::State& state) {
  const sgdstab::Mlp m = bench_mlp();
  const torch::Tensor w1 = sgdstab::cnn::to_tensor(m.weight(1), torch::kCPU).requires_grad_(true);
  const torch::Tensor w2 = sgdstab::cnn::to_tensor(m.weight(2), torch::kCPU).requires_grad_(true);
  const torch::Tensor b1 = torch::zeros({256}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor b2 = torch::zeros({10}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor x = sgdstab::cnn::to_tensor(sgdstab::gaussian_inputs(state.range(0), 784, 2), torch::kCPU);
  for (auto _ : state) {
    for (int64_t i = 0; i < x.size(0); ++i) {
      const torch::Tensor f = torch::relu(x.narrow(0, i, 1).matmul(w1.t()) + b1).matmul(w2.t()) + b2;
      for (int64_t k = 0; k < 10; ++k)
        benchmark::DoNotOptimize(torch::autograd::grad({f.select(1, k).sum()}, {w1, b1, w2, b2}, {}, k < 9));
    }
  }
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TorchMlpJacobianNaive)->Arg(64)->Unit(benchmark::kMillisecond);

sgdstab::cnn::Cnn bench_cnn(bool cifar) {
  if (cifar)  // the reduced VGG-11: VGG-11's layout, widths / 8
    return sgdstab::cnn::Cnn(sgdstab::cnn::CnnSpec::vgg11(8, 3, 32, 32, {64}, 10), 1, torch::Device(torch::kCPU));
  sgdstab::cnn::CnnSpec spec;
  spec.in_channels = 1;
  spec.height = spec.width = 28;
  spec.channels = {8, 16};
  spec.hidden = {64};
  spec.outputs = 10;
  return sgdstab::cnn::Cnn(spec, 1, torch::Device(torch::kCPU));
}

template <class F>
void run_cnn(benchmark::State& state, bool cifar, F f) {
  const sgdstab::cnn::Cnn net = bench_cnn(cifar);
  const sgdstab::Index d = cifar ? 3 * 32 * 32 : 784;
  const Eigen::MatrixXd x = sgdstab::gaussian_inputs(state.range(0), d, 3);
  for (auto _ : state) benchmark::DoNotOptimize(f(net, x).data());
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(state.range(0)),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["p"] = static_cast<double>(net.num_parameters());
}

void BM_CnnJacobianNaive(benchmark::State& state) {
  run_cnn(state, false, [](const auto& net, const auto& x) { return net.jacobian_naive(x); });
}
BENCHMARK(BM_CnnJacobianNaive)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_CnnJacobianBatched(benchmark::State& state) {
  run_cnn(state, false, [](const auto& net, const auto& x) { return net.jacobian(x); });
}
BENCHMARK(BM_CnnJacobianBatched)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_CnnGramBatched(benchmark::State& state) {
  run_cnn(state, false, [](const auto& net, const auto& x) { return net.gram(x); });
}
BENCHMARK(BM_CnnGramBatched)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);

// The Gram streamed: chunks of 8 samples, a limit that holds 4 of them.
void BM_CnnGramStreamed(benchmark::State& state) {
  run_cnn(state, false, [](const auto& net, const auto& x) {
    sgdstab::cnn::GramOptions o;
    o.chunk = 8;
    sgdstab::cnn::GramInfo info;
    net.gram(x.topRows(1), o, &info);
    o.memory_limit_bytes = 4.5 * 8 * info.bytes_per_sample;
    return net.gram(x, o);
  });
}
BENCHMARK(BM_CnnGramStreamed)->Arg(256)->Unit(benchmark::kMillisecond);

void BM_CnnVgg11ReducedNaive(benchmark::State& state) {
  run_cnn(state, true, [](const auto& net, const auto& x) { return net.jacobian_naive(x); });
}
BENCHMARK(BM_CnnVgg11ReducedNaive)->Arg(16)->Unit(benchmark::kMillisecond);

void BM_CnnVgg11ReducedGram(benchmark::State& state) {
  run_cnn(state, true, [](const auto& net, const auto& x) { return net.gram(x); });
}
BENCHMARK(BM_CnnVgg11ReducedGram)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond);

}  // namespace

SGDSTAB_BENCHMARK_MAIN();
