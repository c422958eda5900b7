// `sgdstab demo`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

namespace {

// The built-in problem of `sgdstab demo`: random-feature regression.
Eigen::MatrixXd demo_jacobian(Index n, Index d, Index m) {
  Rng rng(20221128);  // fixed seed: the demo prints the same numbers everywhere
  auto gauss = [&]() {  // Box-Muller without the cached second value (the demo's numbers predate Rng::normal)
    const double u = rng.uniform(), v = rng.uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(6.283185307179586 * v);
  };
  Eigen::MatrixXd x(n, d), w(d, m);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = gauss();
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = gauss() / std::sqrt(static_cast<double>(d));
  // phi(x) = relu(W^T x) / sqrt(m): the Jacobian of f(x) = a . phi(x) in a.
  return (x * w).cwiseMax(0.0) / std::sqrt(static_cast<double>(m));
}

}  // namespace

int cmd_demo(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  const SolverOptions so = solver_options(args);
  const Index n = 64, d = 16, m = 256;
  const Geometry g = Geometry::from_jacobian(demo_jacobian(n, d, m), 1);
  json j;
  j["problem"] = "random-feature regression: n = 64 Gaussian inputs in R^16, 256 ReLU features "
                 "(frozen), scalar output; the Jacobian of this linear-in-theta model is the same "
                 "at every theta, in particular at its interpolating minima";
  const std::vector<ThresholdResult> curve = threshold_curve(g, default_batches(n), sampling, so);
  j.update(curve_json(g, curve));
  Status status = curve_status(curve);
  if (args.has("plot")) {  // the region of all three schemes, as `sgdstab region --plot`
    const StabilityRegion region = stability_region(
        g, {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli}, default_batches(n), so);
    write_region_plot(args.str("plot"), &g, region, {}, so);
    status = combine(status, region.status());
    j["plot"] = args.str("plot");
  }
  return finish(j, status, out, err);
}

}  // namespace sgdstab::cli
