// Benchmarks of the core solver (figures recorded in docs/performance.md).
//
//   build/bench/sgdstab_bench --benchmark_filter=Apply      # operator vs GEMM throughput
//   build/bench/sgdstab_bench --benchmark_filter=Threshold  # eta* at nC = 4096
//   build/bench/sgdstab_bench --benchmark_filter=Bounds     # the bounds table for one B
//
// Problems are synthetic and seeded: a full-rank Gram K = G D G^T with G
// Gaussian (nC x 3nC/2) and D_kk = 1 / (1 + k / 64) (a decaying spectrum,
// like an NTK), split into n samples of C = 4 outputs.
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <Eigen/Dense>
#include <chrono>
#include <random>

#include "sgdstab/sgdstab.hpp"

namespace {

using Eigen::MatrixXd;

MatrixXd gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  MatrixXd m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = nd(gen);
  return m;
}

MatrixXd synthetic_gram(Eigen::Index nc) {
  MatrixXd g = gaussian(nc, 3 * nc / 2, 7);
  for (Eigen::Index k = 0; k < g.cols(); ++k) g.col(k) /= std::sqrt(1.0 + static_cast<double>(k) / 64.0);
  MatrixXd K = MatrixXd::Zero(nc, nc);
  K.selfadjointView<Eigen::Lower>().rankUpdate(g);
  return K.selfadjointView<Eigen::Lower>();
}

// One application of A^{-1/2} Q A^{-1/2} at full rank r = nC, C = 4.
// Flops: nC r^2 (W = Z L, dtrmm) + nC r^2 (two SYRKs) = 2 nC r^2 (theory/operator.md, section 4).
void BM_ApplyPencil(benchmark::State& state) {
  const Eigen::Index nc = state.range(0);
  const auto geometry = sgdstab::Geometry::from_gram(synthetic_gram(nc), 4);
  const sgdstab::SecondMomentOperator T(geometry, 8);
  const sgdstab::PencilOperator op(T);
  const Eigen::VectorXd x = gaussian(op.rows(), 1, 3);
  Eigen::VectorXd y(op.rows());
  for (auto _ : state) {
    op.perform_op(x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double r = static_cast<double>(geometry.rank());
  state.counters["flop_rate"] = benchmark::Counter(2.0 * nc * r * r, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rank"] = r;
}
BENCHMARK(BM_ApplyPencil)->Arg(1024)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// A plain Eigen GEMM of the same shape as the dominant product (nC x r times r x r).
void BM_ApplyReferenceEigenGemm(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  const MatrixXd a = gaussian(n, n, 1), b = gaussian(n, n, 2);
  MatrixXd c(n, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["flop_rate"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ApplyReferenceEigenGemm)->Arg(1024)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// eta*(B = 8, without replacement) from a Gram of size nC (reduction included).
void BM_Threshold(benchmark::State& state) {
  const Eigen::Index nc = state.range(0);
  const MatrixXd K = synthetic_gram(nc);
  sgdstab::SolverOptions opt;
  opt.device = sgdstab::Device::cpu;  // the CPU figures, also on a machine with a GPU
  if (state.range(1) > 0) opt.subspace_dimension = state.range(1);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto geometry = sgdstab::Geometry::from_gram(K, 4);
    const auto t1 = std::chrono::steady_clock::now();
    const auto res = sgdstab::stability_threshold(geometry, 8, sgdstab::Sampling::without_replacement, opt);
    state.counters["reduction_s"] = std::chrono::duration<double>(t1 - t0).count();
    state.counters["matvecs"] = static_cast<double>(res.report.matvecs);
    state.counters["restarts"] = static_cast<double>(res.report.iterations);
    state.counters["converged"] = res.converged() ? 1 : 0;
    state.counters["eta_star"] = res.eta_star;
    state.counters["residual"] = res.report.residual;
  }
}
BENCHMARK(BM_Threshold)->Args({1024, 0})->Args({2048, 0})->Args({2048, 8})->Args({2048, 20})->Args({2048, 40})->Args({4096, 0})
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// The bounds table for one batch size (eta_sufficient, the Mulayoff-Michaeli
// bounds, the non-uniformity) given eta* and mu_*: two largest eigenvalues of
// r x r matrices (Lanczos from r = 400 on) and two operator applications.
void BM_StabilityBounds(benchmark::State& state) {
  const Eigen::Index nc = state.range(0);
  const auto geometry = sgdstab::Geometry::from_gram(synthetic_gram(nc), 4);
  sgdstab::ThresholdResult known;  // the bounds alone are timed
  known.batch = 8;
  known.eta_star = 1.0;
  for (auto _ : state)
    benchmark::DoNotOptimize(sgdstab::stability_bounds(geometry, 8, sgdstab::Sampling::without_replacement, {}, &known,
                                                       0.1));
}
BENCHMARK(BM_StabilityBounds)->Arg(1024)->Arg(4096)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

SGDSTAB_BENCHMARK_MAIN();
