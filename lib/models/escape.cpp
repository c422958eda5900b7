// Nonlinear escape runs (theory/montecarlo.md, section 7).
#include "sgdstab/escape.hpp"

#include <algorithm>
#include <boost/math/distributions/beta.hpp>
#include <cmath>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/schedule.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::require;

MlpProblem::MlpProblem(Mlp model, MatrixXd x, MatrixXd y) : model_(std::move(model)), x_(std::move(x)), y_(std::move(y)) {
  model_.residuals(x_, y_);  // validates the shapes and values once
}

double MlpProblem::loss(const VectorXd& theta) const {
  if (!theta.allFinite()) return INFINITY;
  model_.set_parameters(theta);
  const MatrixXd r = model_.forward(x_) - y_;
  return 0.5 * r.squaredNorm() / static_cast<double>(x_.rows());
}

VectorXd MlpProblem::batch_gradient(const VectorXd& theta, const std::vector<Index>& batch, double divisor) const {
  model_.set_parameters(theta);
  return model_.batch_gradient_unchecked(x_, y_, batch, divisor);
}

VectorXd MlpProblem::range_direction(const VectorXd& theta_star, Rng& rng) const {
  model_.set_parameters(theta_star);
  VectorXd w(x_.rows() * model_.outputs());
  for (Index i = 0; i < w.size(); ++i) w(i) = rng.normal();
  const VectorXd v = model_.vjp(x_, w);  // J^T w lies in range(J^T J) = range(H)
  require(v.norm() > 0.0 && v.allFinite(), "MlpProblem::range_direction",
          "J^T w is zero or not finite at theta_star: the Jacobian vanishes, range(H) = {0}");
  return v / v.norm();
}

void EscapeOptions::validate(Index samples) const {
  require(std::isfinite(lr) && lr > 0.0, "EscapeOptions::lr", "must be finite and > 0, got " + detail::fmt(lr));
  check_batch(batch, samples, "EscapeOptions::batch");
  check_fields(*this, "EscapeOptions");  // the table's rules (escape_options.cpp)
  momentum.validate();
}

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace

std::pair<double, double> clopper_pearson(Index successes, Index trials, double confidence) {
  require(trials >= 1 && successes >= 0 && successes <= trials, "clopper_pearson",
          "need 0 <= successes <= trials, trials >= 1; got " + std::to_string(successes) + " of " +
              std::to_string(trials));
  require(confidence > 0.0 && confidence < 1.0, "clopper_pearson", "confidence must lie in (0, 1)");
  const double k = static_cast<double>(successes), m = static_cast<double>(trials), alpha = 1.0 - confidence;
  const double low = successes == 0 ? 0.0 : boost::math::quantile(boost::math::beta_distribution<>(k, m - k + 1), alpha / 2);
  const double high =
      successes == trials ? 1.0 : boost::math::quantile(boost::math::beta_distribution<>(k + 1, m - k), 1 - alpha / 2);
  return {low, high};
}

EscapeReport escape_runs(const SgdProblem& problem, const VectorXd& theta_star, const EscapeOptions& o) {
  const Index n = problem.samples();
  o.validate(n);
  require(theta_star.size() == problem.params() && theta_star.allFinite(), "escape_runs",
          "theta_star must be a finite vector of length p = " + std::to_string(problem.params()));
  const detail::Stopwatch watch;
  EscapeReport rep;
  rep.runs = o.runs;
  std::vector<double> escape_steps, rates;
  for (Index run = 0; run < o.runs; ++run) {
    Rng rng(Rng::stream_seed(o.seed, static_cast<std::uint64_t>(run), 4));
    VectorXd theta = theta_star + o.epsilon * problem.range_direction(theta_star, rng);
    BatchSampler sampler(o.schedule, n, o.batch, Rng::stream_seed(o.seed, static_cast<std::uint64_t>(run), 5));
    const double l0 = problem.loss(theta);
    require(std::isfinite(l0), "escape_runs", "the loss at theta_star + epsilon delta is not finite");
    double last_finite = l0;
    bool decided = false;
    if (!(l0 > 0.0)) {  // exactly at a zero-loss point along this direction: nothing to escape from
      ++rep.returned;
      decided = true;
    }
    VectorXd velocity = VectorXd::Zero(theta.size());
    const double beta = o.momentum.beta;
    for (Index t = 1; t <= o.max_steps && !decided; ++t) {
      detail::throw_if_interrupted("escape");
      double divisor = 1.0;
      const std::vector<Index>& b = sampler.next(divisor);
      const VectorXd grad = problem.batch_gradient(theta, b, divisor);
      if (beta > 0.0) {  // theory/momentum.md, section 1
        velocity = beta * velocity + grad;
        theta -= o.lr * (o.momentum.nesterov ? VectorXd(grad + beta * velocity) : velocity);
      } else {
        theta -= o.lr * grad;
      }
      const double l = problem.loss(theta);
      if (std::isfinite(l)) last_finite = l;
      if (!std::isfinite(l) || l > o.escape_factor * l0) {
        ++rep.escaped;
        escape_steps.push_back(static_cast<double>(t));
        rates.push_back(std::log(last_finite / l0) / static_cast<double>(t));
        decided = true;
      } else if (l < o.converge_factor * l0) {
        ++rep.returned;
        decided = true;
      }
    }
    if (!decided) ++rep.undecided;
    if (o.progress) o.progress(run + 1, o.runs);
  }
  rep.escape_fraction = static_cast<double>(rep.escaped) / static_cast<double>(rep.runs);
  std::tie(rep.ci_low, rep.ci_high) = clopper_pearson(rep.escaped, rep.runs, o.confidence);
  rep.median_escape_step = median_of(escape_steps);
  rep.growth_rate = median_of(rates);
  rep.report.status = Status::converged;
  rep.report.iterations = o.runs;
  rep.report.message = std::to_string(rep.escaped) + " escaped, " + std::to_string(rep.returned) + " converged, " +
                       std::to_string(rep.undecided) + " undecided within " + std::to_string(o.max_steps) + " steps";
  rep.report.seconds = watch.seconds();
  return rep;
}

}  // namespace sgdstab
