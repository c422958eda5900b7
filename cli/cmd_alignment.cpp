// `sgdstab alignment`.
#include <ostream>

#include "commands.hpp"
#include "inputs.hpp"
#include "report.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sgdstab.hpp"

namespace sgdstab::cli {

int cmd_alignment(const Args& args, std::ostream& out, std::ostream& err) {
  if (args.has("residual") == args.has("direction"))
    throw UsageError("give exactly one of --residual FILE (f_i - y_i) or --direction FILE (delta in R^p)");
  if (args.has("curvature") || args.has("softmax"))
    throw UsageError("--curvature and --softmax are not available in alignment (its mu is the square loss's noise)");
  const Index c = outputs_option(args);
  json j;
  Eigen::VectorXd r;
  Eigen::MatrixXd gram;
  if (args.has("direction")) {
    if (!args.has("jacobian")) throw UsageError("--direction needs --jacobian (delta lives in parameter space)");
    const Eigen::MatrixXd jac = read_matrix(args.str("jacobian"));
    const Eigen::MatrixXd delta = read_matrix(args.str("direction"));
    if (delta.size() != jac.cols())
      throw sgdstab::invalid_argument("--direction: delta must have p = " + std::to_string(jac.cols()) +
                                      " entries, got " + std::to_string(delta.size()));
    r = jac * Eigen::Map<const Eigen::VectorXd>(delta.data(), delta.size());
    gram = jac * jac.transpose();
  } else {
    if (args.has("jacobian") == args.has("gram")) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
    gram = args.has("gram") ? read_matrix(args.str("gram")) : [&] {
      const Eigen::MatrixXd jac = read_matrix(args.str("jacobian"));
      return Eigen::MatrixXd(jac * jac.transpose());
    }();
    r = residual_option(args, "residual", gram.rows(), c);
  }
  const double mu = alignment(gram, c, r);
  j[args.has("direction") ? "mu_lin" : "mu"] = mu;
  const ReductionOptions ro = reduction_options(args);
  const Geometry g = Geometry::from_gram(gram, c, ro);
  const WorstAlignment worst = worst_case_alignment(g);
  j["mu_star"] = worst.mu_star;
  j["status"] = to_string(worst.status());
  geometry_fields(j, g);
  j["definition"] = "mu = Tr(Sigma_1 G) / (2 L |G|_F^2) with Sigma_1 the single-sample SGD noise covariance, "
                    "G = J^T J / n; mu_lin(delta) uses the residuals J delta; mu_* is the minimum of mu_lin over range(H)";
  return finish(j, worst.status(), out, err);
}

}  // namespace sgdstab::cli
