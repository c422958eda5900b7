// The MNIST setup of Mulayoff & Michaeli (COLT 2024), on Fashion-MNIST:
// one hidden ReLU layer of width 1024 with biases, 4 classes x 256 samples,
// one-hot square-loss targets. Reach an interpolating minimum with
// Levenberg-Marquardt, then compute the exact eta*(B) for B = 1, 2, 4, ..., 128
// beside 2 / lambda_max(H).
//
// usage: fashion_mnist_mulayoff [FASHION_MNIST_DIR] [SEED]
//   (default directory: found from the Debian package dataset-fashion-mnist)
#include <chrono>
#include <vector>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sgdstab/sgdstab.hpp"

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : sgdstab::find_fashion_mnist_directory();
  const std::uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  auto t0 = std::chrono::steady_clock::now();
  const sgdstab::LabeledImages images = sgdstab::read_fashion_mnist(dir, /*train=*/true);
  const sgdstab::Dataset data = sgdstab::select_classes(images, sgdstab::Selection{{0, 1, 2, 3}, 256},
                                                        sgdstab::PixelScaling::unit, "fashion-mnist train");
  std::printf("data: %s (n = %ld, d = %ld, c = %ld), read in %.1f s\n", data.description.c_str(),
              static_cast<long>(data.samples()), static_cast<long>(data.input_dim()),
              static_cast<long>(data.outputs()), since(t0));

  sgdstab::MlpSpec spec;
  spec.widths = {784, 1024, 4};
  spec.activations = {sgdstab::Activation::relu};
  spec.bias = true;
  sgdstab::Mlp net(spec, seed);
  t0 = std::chrono::steady_clock::now();
  const sgdstab::MinimizeResult min = sgdstab::gauss_newton(net, data.inputs, data.targets);
  std::printf("minimum: %s after %ld Levenberg-Marquardt iterations, loss %.3g, max residual %.3g "
              "(tolerance %.3g), p = %ld, %.1f s\n",
              min.converged() ? "reached" : "NOT reached", static_cast<long>(min.report.iterations), min.loss,
              min.max_residual, min.tolerance, static_cast<long>(net.num_parameters()), since(t0));
  if (!min.converged()) {
    std::fprintf(stderr, "%s\n", min.report.message.c_str());
    return 3;
  }

  t0 = std::chrono::steady_clock::now();
  const sgdstab::Geometry g = sgdstab::geometry_at_minimum(net, data.inputs, data.targets);
  std::printf("geometry: rank %ld of n c = %ld, lambda_max(H) = %.6g, 2/lambda_max = %.6g, %.1f s\n",
              static_cast<long>(g.rank()), static_cast<long>(g.samples() * g.outputs()), g.lambda_max(),
              2.0 / g.lambda_max(), since(t0));

  // All batch sizes from one shared subspace (sgdstab/region.hpp, theory/region.md).
  t0 = std::chrono::steady_clock::now();
  const std::vector<sgdstab::Index> batches = {1, 2, 4, 8, 16, 32, 64, 128};
  const std::vector<sgdstab::ThresholdResult> curve = sgdstab::threshold_curve(g, batches);
  const double curve_seconds = since(t0);
  std::printf("%6s  %14s  %14s  %8s  %12s\n", "B", "eta*(B)", "eta*/(2/lmax)", "matvecs", "error bound");
  bool all = true;
  long matvecs = 0;
  for (const sgdstab::ThresholdResult& r : curve) {
    all = all && r.converged();
    matvecs += static_cast<long>(r.report.matvecs);
    std::printf("%6ld  %14.8g  %14.6f  %8ld  %12.2g%s\n", static_cast<long>(r.batch), r.eta_star,
                r.eta_star * g.lambda_max() / 2.0, static_cast<long>(r.report.matvecs), r.report.error_bound,
                r.converged() ? "" : "  (NOT converged)");
  }
  std::printf("curve: %ld operator applications in all (matvecs: those spent while that B was the target), %.1f s\n",
              matvecs, curve_seconds);
  return all ? 0 : 3;
} catch (const std::exception& e) {
  std::fprintf(stderr, "fashion_mnist_mulayoff: %s\n", e.what());
  return 1;
}
