// Benchmarks of the stability region (theory/region.md) on the hard,
// clustered class of Grams (figures recorded in docs/performance.md):
//
//   build/bench/sgdstab_bench_region --benchmark_filter=Clustered/1024
//   build/bench/sgdstab_bench_region --benchmark_filter='Apply|Kernel'
//
// Clustered class: K = J J^T with J Gaussian (nC x 3nC/2) and each sample's
// C = 4 rows scaled by its own factor 2^u, u uniform in [-1, 1] (seeded).
// Its spectrum has no decay at the top: many near-equal eigenvalues, the
// case where Krylov methods need the most applications. The easy class of
// bench_threshold.cpp (D_kk = 1/(1 + k/64)) is measured beside it.
#include <benchmark/benchmark.h>

#include "bench_main.hpp"

#include <Eigen/Dense>
#include <chrono>
#include <memory>
#include <random>
#include <sys/resource.h>

#include "foundations/linalg.hpp"
#include "operators/cuda_backend.hpp"
#include "operators/low_precision.hpp"
#include "sgdstab/sgdstab.hpp"
#include "solvers/eigensolve.hpp"

namespace {

using Eigen::Index;
using Eigen::MatrixXd;

MatrixXd gaussian(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  MatrixXd m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = nd(gen);
  return m;
}

// Minor page faults of the process so far (getrusage).
long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

MatrixXd gram_of(const MatrixXd& j) {
  MatrixXd k = MatrixXd::Zero(j.rows(), j.rows());
  k.selfadjointView<Eigen::Lower>().rankUpdate(j);
  return k.selfadjointView<Eigen::Lower>();
}

MatrixXd clustered_gram(Index nc) {
  MatrixXd j = gaussian(nc, 3 * nc / 2, 11);
  std::mt19937_64 gen(12);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (Index i = 0; i < nc / 4; ++i) j.middleRows(4 * i, 4) *= std::exp2(u(gen));
  return gram_of(j);
}

MatrixXd easy_gram(Index nc) {
  MatrixXd j = gaussian(nc, 3 * nc / 2, 7);
  for (Index k = 0; k < j.cols(); ++k) j.col(k) /= std::sqrt(1.0 + static_cast<double>(k) / 64.0);
  return gram_of(j);
}

MatrixXd gram(Index nc, Index kind) { return kind == 0 ? clustered_gram(nc) : easy_gram(nc); }

const std::vector<sgdstab::Sampling> kAll = {sgdstab::Sampling::without_replacement,
                                             sgdstab::Sampling::with_replacement, sgdstab::Sampling::bernoulli};

// The CPU figures of docs/performance.md are the CPU's, also on a machine with a GPU.
// mixed: the default mixed-precision start (theory/region.md, section 7), else double throughout.
sgdstab::SolverOptions on_cpu(bool mixed = true) {
  sgdstab::SolverOptions o;
  o.device = sgdstab::Device::cpu;
  o.mixed_precision = mixed;
  return o;
}

void report(benchmark::State& state, const sgdstab::StabilityRegion& r) {
  state.counters["matvecs"] = static_cast<double>(r.report.matvecs);
  state.counters["single"] = static_cast<double>(r.report.single_precision_matvecs);
  state.counters["restarts"] = static_cast<double>(r.report.iterations);
  state.counters["converged"] = r.converged() ? 1 : 0;
  state.counters["subspace"] = static_cast<double>(r.subspace_dimension);
  state.counters["eta_B1"] = r.curves[0].points.front().eta_star;
}

// Args: nC, kind (0 clustered, 1 easy). One threshold (B = 8, without
// replacement) the way the library computed it before the region solver:
// Spectra's implicitly restarted Lanczos (ncv = 12) on A^{-1/2} Q A^{-1/2},
// residual <= 1e-10 |lambda|, then one application for the true residual.
void BM_ThresholdSpectra(benchmark::State& state) {
  const auto g = sgdstab::Geometry::from_gram(gram(state.range(0), state.range(1)), 4);
  const sgdstab::SecondMomentOperator t(g, 8);
  sgdstab::PencilOperator op(t);
  Eigen::VectorXd start = sgdstab::pack(MatrixXd((2.0 * g.hessian_eigenvalues()).cwiseSqrt().asDiagonal()));
  start /= start.norm();
  sgdstab::SolverOptions opt;
  opt.method = sgdstab::Method::lanczos;
  opt.subspace_dimension = 12;
  for (auto _ : state) {
    const auto e = sgdstab::detail::top_eigenpair(op, start, opt, 0.0, "eta*");
    state.counters["matvecs"] = static_cast<double>(e.report.matvecs);
    state.counters["converged"] = e.report.converged() ? 1 : 0;
    state.counters["eta_star"] = 1.0 / e.value;
  }
}

// The same threshold as the library computes it now (stability_threshold:
// the shared-subspace solver on one member, error-bound stopping rule);
// range(2): 1 with the mixed-precision start (the default), 0 double throughout.
void BM_ThresholdRegion(benchmark::State& state) {
  const auto g = sgdstab::Geometry::from_gram(gram(state.range(0), state.range(1)), 4);
  for (auto _ : state) {
    const auto t =
        sgdstab::stability_threshold(g, 8, sgdstab::Sampling::without_replacement, on_cpu(state.range(2) == 1));
    state.counters["matvecs"] = static_cast<double>(t.report.matvecs);
    state.counters["single"] = static_cast<double>(t.report.single_precision_matvecs);
    state.counters["converged"] = t.converged() ? 1 : 0;
    state.counters["eta_star"] = t.eta_star;
    state.counters["error_bound"] = t.report.error_bound;
  }
}

// The matrix-free band (issue #29; theory/band.md section 5) at the same
// point as BM_ThresholdRegion (B = 8 without replacement), from the products
// of the Gram's reduced factor (JacobianModel::from_geometry: a Jacobian in r
// coordinates); range(2) = subspace dimension. Counters: the band and its
// relative width; compare eta_low/eta_high with BM_ThresholdRegion's eta_star
// of the same run.
void BM_BandMatrixFree(benchmark::State& state) {
  const auto g = sgdstab::Geometry::from_gram(gram(state.range(0), state.range(1)), 4);
  const sgdstab::JacobianModel model = sgdstab::JacobianModel::from_geometry(g);
  sgdstab::BandOptions o;
  o.subspace = state.range(2);
  o.subspace_doublings = state.range(3);
  for (auto _ : state) {
    const auto b = sgdstab::stability_band(model, 8, sgdstab::Sampling::without_replacement, o);
    state.counters["subspace"] = static_cast<double>(b.subspace_dimension);
    state.counters["doublings"] = static_cast<double>(b.subspace_doublings);
    state.counters["eta_low"] = b.eta_low;
    state.counters["eta_high"] = b.eta_high;
    state.counters["width"] = b.relative_width;
    state.counters["products"] = static_cast<double>(b.products);
    state.counters["probabilistic"] = b.eta_low_kind == "probabilistic" ? 1 : 0;
  }
}

// The full region: 3 schemes x (1, 2, 4, ..., n) batch sizes; range(2) as above.
void BM_Region(benchmark::State& state) {
  const auto g = sgdstab::Geometry::from_gram(gram(state.range(0), state.range(1)), 4);
  const auto batches = sgdstab::default_batches(g.samples());
  for (auto _ : state) report(state, sgdstab::stability_region(g, kAll, batches, on_cpu(state.range(2) == 1)));
  state.counters["points"] = static_cast<double>(3 * batches.size());
}

// Momentum (issue #16): eta* of heavy-ball (range(2) = 0) or Nesterov (1)
// SGD with beta = 0.9, B = 8 without replacement, beside BM_ThresholdRegion
// on the same Gram in the same run (momentum_threshold: a safeguarded Newton
// on kappa, each kappa a warm-started symmetric eigensolve of plain SGD's cost).
void BM_MomentumThreshold(benchmark::State& state) {
  const auto g = sgdstab::Geometry::from_gram(gram(state.range(0), state.range(1)), 4);
  const sgdstab::Momentum mo{0.9, state.range(2) == 1};
  for (auto _ : state) {
    const auto t = sgdstab::momentum_threshold(g, 8, sgdstab::Sampling::without_replacement, mo);
    state.counters["matvecs"] = static_cast<double>(t.report.matvecs);
    state.counters["evaluations"] = static_cast<double>(t.report.iterations);
    state.counters["converged"] = t.converged() ? 1 : 0;
    state.counters["eta_star"] = t.eta_star;
    state.counters["error_bound"] = t.report.error_bound;
  }
}
BENCHMARK(BM_MomentumThreshold)->Args({1024, 0, 0})->Args({1024, 0, 1})->Args({2048, 0, 0})->Args({2048, 0, 1})->Args({4096, 0, 0})
    ->Args({4096, 0, 1})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

BENCHMARK(BM_ThresholdSpectra)->Args({1024, 0})->Args({2048, 0})->Args({4096, 0})->Args({1024, 1})
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_ThresholdRegion)->Args({1024, 0, 1})->Args({2048, 0, 1})->Args({4096, 0, 1})->Args({1024, 1, 1})
    ->Args({1024, 0, 0})->Args({2048, 0, 0})->Args({4096, 0, 0})->Args({1024, 1, 0})
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
BENCHMARK(BM_BandMatrixFree)->Args({1024, 0, 64, 0})->Args({1024, 0, 64, 2})->Args({4096, 0, 64, 0})
    ->Args({4096, 0, 64, 2})->Args({1024, 1, 64, 0})->Args({1024, 1, 64, 2})->Args({1024, 1, 64, 4})
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_Region)->Args({1024, 0, 1})->Args({2048, 0, 1})->Args({4096, 0, 1})->Args({1024, 1, 1})
    ->Args({1024, 0, 0})->Args({2048, 0, 0})->Args({4096, 0, 0})->Args({1024, 1, 0})
    ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// One application of R (the region's operator) against OpenBLAS DGEMM on the
// same flop count, 2 nC r^2 (operator.md section 4: one dtrmm and two dsyrk,
// the flops of one nC x r by r x r product), in the same run; and the
// single-precision application (theory/region.md, section 7) counted the same way.
void BM_ApplyR(benchmark::State& state) {
  const Index nc = state.range(0);
  const auto g = sgdstab::Geometry::from_gram(clustered_gram(nc), 4);
  const sgdstab::SecondMomentOperator d(g, 1, sgdstab::Sampling::with_replacement);
  const sgdstab::PencilOperator op(d);
  const Eigen::VectorXd x = gaussian(op.rows(), 1, 3);
  Eigen::VectorXd y(op.rows());
  // Google Benchmark calls this function several times, each with a fresh
  // operator: one untimed application first, so that every timed one finds
  // its scratch space allocated, as all but the first of a solve do (the
  // first is BM_ApplyRFirst).
  op.perform_op(x.data(), y.data());
  const long faults = minor_faults();
  for (auto _ : state) {
    op.perform_op(x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["page_faults"] = benchmark::Counter(static_cast<double>(minor_faults() - faults),
                                                     benchmark::Counter::kAvgIterations);
  const double r = static_cast<double>(g.rank());
  state.counters["flop_rate"] = benchmark::Counter(2.0 * nc * r * r, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_ApplyRSingle(benchmark::State& state) {
  const Index nc = state.range(0);
  const auto g = sgdstab::Geometry::from_gram(clustered_gram(nc), 4);
  const auto apply = sgdstab::detail::low_precision_pencil_r(g);
  const Eigen::Index m = sgdstab::packed_size(g.rank());
  const Eigen::VectorXf x = gaussian(m, 1, 3).cast<float>();
  Eigen::VectorXf y(m);
  apply(x.data(), y.data());  // untimed, as in BM_ApplyR
  for (auto _ : state) {
    apply(x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double r = static_cast<double>(g.rank());
  state.counters["flop_rate"] = benchmark::Counter(2.0 * nc * r * r, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ApplyRSingle)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);
void BM_ApplyDgemm(benchmark::State& state) {
  const Index n = state.range(0);
  const MatrixXd a = gaussian(n, n, 1), b = gaussian(n, n, 2);
  MatrixXd c(n, n);
  for (auto _ : state) {
    sgdstab::detail::gemm(false, false, 1.0, a, b, 0.0, c);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["flop_rate"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
// SGEMM on the same flop count: the single-precision application's yardstick (issue #33).
void BM_ApplySgemm(benchmark::State& state) {
  const Index n = state.range(0);
  const Eigen::MatrixXf a = gaussian(n, n, 1).cast<float>(), b = gaussian(n, n, 2).cast<float>();
  Eigen::MatrixXf c(n, n);
  for (auto _ : state) {
    sgdstab::detail::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["flop_rate"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ApplySgemm)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);

// Where an application's time goes: its two BLAS kernels alone at the
// operator's shapes (nC x r factor, r = nC here), each nC r^2 flops: W = Z L
// (dtrmm) and the lower triangle of Z^T Z (dsyrk; the operator splits it in
// two calls, P^T P - M^T M). The rest of BM_ApplyR is the O(nC r + r^2) passes.
void BM_KernelDtrmm(benchmark::State& state) {
  const Index n = state.range(0);
  const MatrixXd z = gaussian(n, n, 1);
  const MatrixXd l = gaussian(n, n, 2);
  MatrixXd w;
  for (auto _ : state) {
    sgdstab::detail::trmm_lower_right(z, l, w);
    benchmark::DoNotOptimize(w.data());
  }
  state.counters["flop_rate"] = benchmark::Counter(1.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_KernelDsyrk(benchmark::State& state) {
  const Index n = state.range(0);
  const MatrixXd z = gaussian(n, n, 1);
  MatrixXd out = MatrixXd::Zero(n, n);
  for (auto _ : state) {
    sgdstab::detail::syrk_lower(true, 1.0, z.data(), n / 2, n, n, out);
    sgdstab::detail::syrk_lower(true, -1.0, z.data() + n / 2, n - n / 2, n, n, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["flop_rate"] = benchmark::Counter(1.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_KernelDtrmm)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);
BENCHMARK(BM_KernelDsyrk)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);

// The first application of a fresh operator: its scratch space (three
// nC x r and r x r matrices) is touched for the first time, which costs page
// faults the later applications of a solve do not pay.
void BM_ApplyRFirst(benchmark::State& state) {
  const Index nc = state.range(0);
  const auto g = sgdstab::Geometry::from_gram(clustered_gram(nc), 4);
  const Eigen::VectorXd x = gaussian(sgdstab::packed_size(g.rank()), 1, 3);
  Eigen::VectorXd y(x.size());
  for (auto _ : state) {
    state.PauseTiming();
    auto d = std::make_unique<sgdstab::SecondMomentOperator>(g, 1, sgdstab::Sampling::with_replacement);
    auto op = std::make_unique<sgdstab::PencilOperator>(*d);
    state.ResumeTiming();
    op->perform_op(x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    state.PauseTiming();
    op.reset();
    d.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_ApplyRFirst)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_ApplyR)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);

// The GPU backend (issue #13, theory/gpu.md; run by scripts/gpu_check.sh):
// one application of R on the GPU (uploads, cuBLAS, downloads, host packing),
// and one threshold with --device cuda; skipped without a usable GPU.
void BM_ApplyRGpu(benchmark::State& state) {
  const sgdstab::GpuStatus s = sgdstab::gpu_status();
  if (!s.usable) {
    state.SkipWithError(("no usable GPU: " + s.reason).c_str());
    return;
  }
  const Index nc = state.range(0);
  const auto g = sgdstab::Geometry::from_gram(clustered_gram(nc), 4);
  const sgdstab::detail::ApplyFn apply = sgdstab::detail::gpu_pencil_r(g);
  const Eigen::VectorXd x = gaussian(sgdstab::packed_size(g.rank()), 1, 3);
  Eigen::VectorXd y(x.size());
  for (auto _ : state) {
    apply(x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double r = static_cast<double>(g.rank());
  state.counters["flop_rate"] = benchmark::Counter(4.0 * nc * r * r, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_ThresholdGpu(benchmark::State& state) {
  const sgdstab::GpuStatus s = sgdstab::gpu_status();
  if (!s.usable) {
    state.SkipWithError(("no usable GPU: " + s.reason).c_str());
    return;
  }
  const auto g = sgdstab::Geometry::from_gram(clustered_gram(state.range(0)), 4);
  sgdstab::SolverOptions o;
  o.device = sgdstab::Device::cuda;
  for (auto _ : state) {
    const auto t = sgdstab::stability_threshold(g, 8, sgdstab::Sampling::without_replacement, o);
    state.counters["matvecs"] = static_cast<double>(t.report.matvecs);
    state.counters["converged"] = t.converged() ? 1 : 0;
    state.counters["eta_star"] = t.eta_star;
  }
}
BENCHMARK(BM_ApplyRGpu)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ThresholdGpu)->Arg(4096)->Arg(16384)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_ApplyDgemm)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(4.0);

}  // namespace

SGDSTAB_BENCHMARK_MAIN();
