#pragma once
/// \file escape.hpp
/// \brief Nonlinear SGD started near a minimum: does it escape? The
/// nonlinear counterpart of the linearized Monte Carlo check (montecarlo.hpp);
/// theory/montecarlo.md, section 7.
///
/// \code
/// sgdstab::MlpProblem problem(net, x, y);          // at an interpolating minimum
/// sgdstab::EscapeOptions o;
/// o.lr = 1.3 * eta_star;
/// o.batch = 4;
/// auto rep = sgdstab::escape_runs(problem, net.parameters(), o);
/// // rep.escape_fraction with its Clopper-Pearson interval [rep.ci_low, rep.ci_high]
/// \endcode
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "sgdstab/mlp.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/random.hpp"
#include "sgdstab/schedule.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// What nonlinear SGD needs of a problem: n per-sample losses l_i(theta)
/// with L = (1/n) sum_i l_i, batch gradients, and a direction in range(H)
/// at the minimum to perturb along.
class SgdProblem {
 public:
  virtual ~SgdProblem() = default;
  virtual Index samples() const = 0;
  virtual Index params() const = 0;
  /// L(theta).
  virtual double loss(const Eigen::VectorXd& theta) const = 0;
  /// (1/divisor) sum_{i in batch} grad l_i(theta) (indices may repeat).
  virtual Eigen::VectorXd batch_gradient(const Eigen::VectorXd& theta, const std::vector<Index>& batch,
                                         double divisor) const = 0;
  /// A random unit vector in range(H(theta_star)), drawn from rng.
  virtual Eigen::VectorXd range_direction(const Eigen::VectorXd& theta_star, Rng& rng) const = 0;
};

/// An Mlp on a data set as an SgdProblem (square loss, the library's convention).
/// range_direction returns J^T w / |J^T w| for Gaussian w (J at theta_star).
class MlpProblem : public SgdProblem {
 public:
  MlpProblem(Mlp model, Eigen::MatrixXd x, Eigen::MatrixXd y);
  Index samples() const override { return x_.rows(); }
  Index params() const override { return model_.num_parameters(); }
  double loss(const Eigen::VectorXd& theta) const override;
  Eigen::VectorXd batch_gradient(const Eigen::VectorXd& theta, const std::vector<Index>& batch,
                                 double divisor) const override;
  Eigen::VectorXd range_direction(const Eigen::VectorXd& theta_star, Rng& rng) const override;

 private:
  mutable Mlp model_;
  Eigen::MatrixXd x_, y_;
};

/// Options of escape_runs. validate() throws sgdstab::invalid_argument.
struct EscapeOptions {
  double lr = 0.0;
  Index batch = 0;
  Schedule schedule = Schedule::without_replacement;
  double epsilon = 1e-3;          ///< |theta_0 - theta_star| (a unit range(H) direction times epsilon)
  Index runs = 100;               ///< independent runs, >= 1
  Index max_steps = 20000;
  double escape_factor = 1e4;     ///< escaped when L_t > escape_factor * L_0 (or L_t is not finite)
  double converge_factor = 1e-8;  ///< converged when L_t < converge_factor * L_0
  std::uint64_t seed = 0;
  double confidence = 0.95;       ///< of the escape-fraction interval (Clopper-Pearson)
  std::function<void(Index, Index)> progress;  ///< (runs done, runs total); may be empty
  /// SGD with momentum (PyTorch's convention, theory/momentum.md); v_0 = 0.
  Momentum momentum;
  void validate(Index samples) const;
};

/// EscapeOptions' table (options.hpp): epsilon, runs, max_steps, the two
/// classification factors, seed and confidence with their defaults, help
/// and rules; lr, batch, schedule and momentum are the run's.
template <>
const std::vector<OptionField<EscapeOptions>>& option_table<EscapeOptions>();

/// Clopper-Pearson interval for k successes in m trials at the given confidence.
std::pair<double, double> clopper_pearson(Index successes, Index trials, double confidence);

/// Classification of the runs started at theta_star + epsilon delta.
struct EscapeReport : Result {
  /// The runs, those that escaped, those that returned to the minimum
  /// (L_t < converge_factor * L_0) and those still undecided at the end.
  Index runs = 0, escaped = 0, returned = 0, undecided = 0;
  double escape_fraction = 0.0, ci_low = 0.0, ci_high = 0.0;
  double median_escape_step = 0.0;   ///< NaN when no run escaped
  /// Median over escaped runs of log(L_last / L_0) / steps (L_last the last
  /// finite loss): the typical growth rate, to compare with log rho(T) (the
  /// mean-square rate; the typical rate is at most that in the limit, up to
  /// first-passage and overshoot effects of a finite run).
  double growth_rate = 0.0;          ///< NaN when no run escaped
  // report: converged once every run ran; message the counts in words; seconds.
};
EscapeReport escape_runs(const SgdProblem& problem, const Eigen::VectorXd& theta_star, const EscapeOptions& options);

}  // namespace sgdstab
