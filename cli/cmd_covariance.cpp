// `sgdstab covariance`.
#include <ostream>

#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_covariance(const Args& args, std::ostream& out, std::ostream& err) {
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  if (!args.has("residual")) throw UsageError("covariance needs --residual FILE (the n C residuals f(x_i) - y_i)");
  if (args.has("curvature") || args.has("softmax"))
    throw UsageError("--curvature and --softmax are not available in covariance yet (square-loss residuals)");
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  CovarianceOptions o;
  if (args.has("top")) {
    const long long top = args.integer("top");
    if (top < 0) throw UsageError("--top: K must be >= 0, got " + std::to_string(top));
    o.top = static_cast<Index>(top);
  }
  if (args.has("gradient-tol")) o.gradient_tolerance = args.number("gradient-tol");
  o.validate();
  const Geometry g = load_geometry(args);
  const Index b = batch_of(args, g);
  const Eigen::MatrixXd res = read_matrix(args.str("residual"));
  const CovarianceResult r =
      stationary_covariance(g, Eigen::Map<const Eigen::VectorXd>(res.data(), res.size()), lr, b, sampling, o);
  return finish(covariance_json(g, r), r.status(), out, err);
}

}  // namespace sgdstab::cli
