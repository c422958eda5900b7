// Monte Carlo module against independent references: exhaustive batch
// enumeration in parameter space (Kronecker form of T), exhaustive
// enumeration of every epoch permutation for reshuffling, GD in closed form,
// and the combinatorics of each batch schedule.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <type_traits>

#include "reference.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/escape.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Sampling;
using sgdstab::Schedule;

namespace {

// E|delta_t|^2 in parameter space from vec(S_{t+1}) = T vec(S_t), T = I - lr (H (+) H) + lr^2 E[H_b (x) H_b],
// with S_0 = P / r (P the projector on range(H)).
std::vector<double> brute_force_moments(const MatrixXd& j, Eigen::Index b, Sampling s, double lr, int steps) {
  const auto h = ref::per_sample(j, 1);
  const Eigen::Index p = j.cols();
  const MatrixXd hm = j.transpose() * j / static_cast<double>(h.size());
  const ref::Moments m = ref::enumerate(h, b, s);
  const MatrixXd t = MatrixXd::Identity(p * p, p * p) - lr * ref::kron_identity_sum(hm) + lr * lr * m.kron2;
  ref::SymEigenSolver es(hm);
  MatrixXd proj = MatrixXd::Zero(p, p);
  int rank = 0;
  for (Eigen::Index k = 0; k < p; ++k)
    if (es.eigenvalues()(k) > 1e-10 * es.eigenvalues().maxCoeff()) {
      proj += es.eigenvectors().col(k) * es.eigenvectors().col(k).transpose();
      ++rank;
    }
  VectorXd s_vec = Eigen::Map<const VectorXd>(proj.data(), p * p) / rank;
  std::vector<double> out;
  for (int k = 0; k <= steps; ++k) {
    out.push_back(Eigen::Map<const MatrixXd>(s_vec.data(), p, p).trace());
    s_vec = t * s_vec;
  }
  return out;
}

using ref::kSchemes;

// The exact per-epoch operator of reshuffling: the mean over all n! orders of
// P (x) P (vec(P S P^T)), P = A_last ... A_first, the order cut into batches of
// B (the last one short, divided by its own size), A_b = I - lr H_b.
MatrixXd reshuffle_epoch_operator(const std::vector<MatrixXd>& h, Eigen::Index b, double lr) {
  const Eigen::Index n = static_cast<Eigen::Index>(h.size()), p = h[0].rows();
  std::vector<int> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  MatrixXd epoch = MatrixXd::Zero(p * p, p * p);
  int count = 0;
  do {
    MatrixXd pe = MatrixXd::Identity(p, p);
    for (Eigen::Index start = 0; start < n; start += b) {
      const Eigen::Index end = std::min(n, start + b);
      MatrixXd hb = MatrixXd::Zero(p, p);
      for (Eigen::Index i = start; i < end; ++i) hb += h[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])];
      pe = (MatrixXd::Identity(p, p) - lr * hb / static_cast<double>(end - start)) * pe;
    }
    for (Eigen::Index a = 0; a < p; ++a)
      for (Eigen::Index c = 0; c < p; ++c) epoch.block(a * p, c * p, p, p) += pe(a, c) * pe;
    ++count;
  } while (std::next_permutation(perm.begin(), perm.end()));
  return epoch / count;
}

}  // namespace

TEST(MonteCarlo, ExactMomentsMatchBruteForceEnumeration) {
  const MatrixXd j = ref::gaussian(6, 4, 3);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  for (Sampling s : kSchemes) {
    const double lr = 0.8 * sgdstab::stability_threshold(g, 2, s).eta_star;
    const auto exact = sgdstab::exact_moments(g, lr, 2, s, 6);
    const auto ref = brute_force_moments(j, 2, s, lr, 6);
    for (int t = 0; t <= 6; ++t) EXPECT_REL_NEAR(exact.squared_norm[static_cast<std::size_t>(t)], ref[static_cast<std::size_t>(t)], 1e-11);
  }
}

TEST(MonteCarlo, ExactMomentsInsideTheMonteCarloIntervalBelowThreshold) {
  const MatrixXd j = ref::gaussian(8, 5, 11);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  for (Sampling s : kSchemes) {
    sgdstab::SimulationOptions o;
    o.batch = 3;
    o.lr = 0.7 * sgdstab::stability_threshold(g, o.batch, s).eta_star;
    o.schedule = sgdstab::to_schedule(s);
    o.steps = 20;
    o.trajectories = 20000;
    o.confidence = 1.0 - 1e-4;  // 126 intervals: a false failure has probability ~1 %
    o.seed = 5;
    const auto sim = sgdstab::simulate_linearized(g, o);
    const auto exact = sgdstab::exact_moments(g, o.lr, o.batch, s, o.steps);
    ASSERT_EQ(sim.squared_norm.size(), 21u);
    for (std::size_t t = 0; t < sim.squared_norm.size(); ++t) {
      const auto& e = sim.squared_norm[t];
      EXPECT_LE(e.ci_low, exact.squared_norm[t]) << sgdstab::to_string(s) << " t = " << t;
      EXPECT_GE(e.ci_high, exact.squared_norm[t]) << sgdstab::to_string(s) << " t = " << t;
      const auto& l = sim.loss[t];
      EXPECT_LE(l.ci_low, exact.loss[t]) << sgdstab::to_string(s) << " t = " << t;
      EXPECT_GE(l.ci_high, exact.loss[t]) << sgdstab::to_string(s) << " t = " << t;
    }
    // Below the threshold the moment decays.
    EXPECT_LT(exact.squared_norm.back(), exact.squared_norm.front());
  }
}

TEST(MonteCarlo, GradientDescentTrajectoriesAreExact) {
  const MatrixXd j = ref::gaussian(5, 3, 2);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  sgdstab::SimulationOptions o;
  o.batch = 5;  // B = n without replacement: every batch is the full set
  o.lr = 1.5 / g.lambda_max();
  o.steps = 7;
  o.trajectories = 4;
  o.start = VectorXd::LinSpaced(g.rank(), 1.0, 2.0);
  const auto sim = sgdstab::simulate_linearized(g, o);
  VectorXd delta = o.start;
  for (int t = 0; t <= 7; ++t) {
    EXPECT_REL_NEAR(sim.squared_norm[static_cast<std::size_t>(t)].mean, delta.squaredNorm(), 1e-12);
    EXPECT_REL_NEAR(sim.squared_norm[static_cast<std::size_t>(t)].median, delta.squaredNorm(), 1e-12);
    delta = delta - o.lr * g.hessian_eigenvalues().cwiseProduct(delta);
  }
}

TEST(MonteCarlo, SampledOperatorIntervalContainsRho) {
  const MatrixXd j = ref::gaussian(7, 4, 21);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  for (Sampling s : kSchemes)
    for (double factor : {0.6, 1.3}) {
      sgdstab::RadiusEstimateOptions o;
      o.batch = 2;
      o.lr = factor * sgdstab::stability_threshold(g, 2, s).eta_star;
      o.schedule = sgdstab::to_schedule(s);
      o.blocks = 20000;
      o.confidence = 0.999;
      o.seed = 3;
      const auto est = sgdstab::estimate_radius(g, o);
      ASSERT_TRUE(est.converged()) << est.report.message;
      const double rho = sgdstab::spectral_radius(g, o.lr, 2, s).rho;
      EXPECT_LE(est.ci_low, rho) << sgdstab::to_string(s) << " x" << factor;
      EXPECT_GE(est.ci_high, rho) << sgdstab::to_string(s) << " x" << factor;
      EXPECT_LT(est.ci_high - est.ci_low, 0.1 * rho);  // informative, not vacuous
      EXPECT_EQ(rho > 1.0, factor > 1.0);
    }
}

// Reshuffling with n = 4, B = 2: the exact per-epoch operator is the mean of
// P_pi (x) P_pi over all 24 permutations pi, P_pi = A_{second batch} A_{first batch}.
TEST(MonteCarlo, ReshuffleMatchesEnumerationOfEveryEpoch) {
  const MatrixXd j = ref::gaussian(4, 3, 8);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  const auto h = ref::per_sample(j, 1);
  const double lr = 0.9 * sgdstab::stability_threshold(g, 2).eta_star;
  const MatrixXd epoch = reshuffle_epoch_operator(h, 2, lr);
  const double rho_epoch = epoch.eigenvalues().cwiseAbs().maxCoeff();
  sgdstab::RadiusEstimateOptions o;
  o.lr = lr;
  o.batch = 2;
  o.schedule = Schedule::reshuffle;
  o.blocks = 20000;
  o.confidence = 0.99;
  o.seed = 9;
  const auto est = sgdstab::estimate_radius(g, o);
  ASSERT_TRUE(est.converged()) << est.report.message;
  EXPECT_EQ(est.steps_per_block, 2);
  const double rho_step = std::sqrt(rho_epoch);
  EXPECT_LE(est.ci_low, rho_step);
  EXPECT_GE(est.ci_high, rho_step);
  // Full batches: reshuffling is GD, rho = max_k (1 - lr d_k)^2 exactly.
  o.batch = 4;
  const auto gd = sgdstab::estimate_radius(g, o);
  double expect = 0.0;
  for (Eigen::Index k = 0; k < g.rank(); ++k)
    expect = std::max(expect, std::pow(1.0 - lr * g.hessian_eigenvalues()(k), 2));
  EXPECT_REL_NEAR(gd.rho_hat, expect, 1e-8);
}

TEST(MonteCarlo, BatchSchedulesHaveTheRightCombinatorics) {
  const Eigen::Index n = 6, b = 3;
  const int draws = 60000;
  // Without replacement: inclusion B/n, pairs B(B-1)/(n(n-1)).
  sgdstab::BatchSampler without(Schedule::without_replacement, n, b, 1);
  MatrixXd pairs = MatrixXd::Zero(n, n);
  for (int t = 0; t < draws; ++t) {
    double div = 0.0;
    const auto batch = without.next(div);
    ASSERT_EQ(div, 3.0);
    for (auto x : batch)
      for (auto y : batch) pairs(x, y) += 1.0;
  }
  for (Eigen::Index x = 0; x < n; ++x)
    for (Eigen::Index y = 0; y < n; ++y) {
      const double p = x == y ? 0.5 : 3.0 * 2.0 / 30.0;
      // binomial standard error sqrt(draws p (1-p)) <= 123: allow 5 of them
      EXPECT_NEAR(pairs(x, y), draws * p, 5.0 * std::sqrt(draws * p * (1 - p))) << x << "," << y;
    }
  // Bernoulli: batch size Binomial(n, B/n): mean B, variance B (1 - B/n).
  sgdstab::BatchSampler bern(Schedule::bernoulli, n, b, 2);
  double sum = 0.0, sum2 = 0.0;
  for (int t = 0; t < draws; ++t) {
    double div = 0.0;
    const double size = static_cast<double>(bern.next(div).size());
    ASSERT_EQ(div, 3.0);
    sum += size;
    sum2 += size * size;
  }
  const double mean = sum / draws, var = sum2 / draws - mean * mean;
  EXPECT_NEAR(mean, 3.0, 0.03);
  EXPECT_NEAR(var, 1.5, 0.05);
  // Reshuffle: every epoch covers every sample once; B = 4 on n = 6 gives batches of 4 then 2.
  sgdstab::BatchSampler shuffle(Schedule::reshuffle, n, 4, 3);
  EXPECT_EQ(shuffle.steps_per_block(), 2);
  for (int epoch = 0; epoch < 100; ++epoch) {
    std::vector<sgdstab::Index> seen;
    double div = 0.0;
    auto first = shuffle.next(div);
    EXPECT_EQ(div, 4.0);
    seen.insert(seen.end(), first.begin(), first.end());
    auto second = shuffle.next(div);
    EXPECT_EQ(div, 2.0);
    seen.insert(seen.end(), second.begin(), second.end());
    std::sort(seen.begin(), seen.end());
    std::vector<sgdstab::Index> all(6);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(seen, all);
  }
}

TEST(MonteCarlo, CrossCheckAgreesAndIsReproducible) {
  const MatrixXd j = ref::gaussian(6, 4, 31);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  sgdstab::CrossCheckOptions o;
  o.batch = 2;
  o.lr = 0.8 * sgdstab::stability_threshold(g, 2).eta_star;
  o.steps = 10;
  o.trajectories = 5000;
  o.blocks = 5000;
  o.seed = 4;
  const auto rep = sgdstab::cross_check(g, o);
  EXPECT_EQ(rep.verdict, sgdstab::Verdict::agree) << rep.reason;
  ASSERT_TRUE(rep.rho.has_value());
  EXPECT_LT(*rep.rho, 1.0);
  const auto again = sgdstab::cross_check(g, o);
  EXPECT_EQ(again.simulation.squared_norm.back().mean, rep.simulation.squared_norm.back().mean);
  EXPECT_EQ(again.radius.rho_hat, rep.radius.rho_hat);
  o.seed = 5;
  EXPECT_NE(sgdstab::cross_check(g, o).simulation.squared_norm.back().mean, rep.simulation.squared_norm.back().mean);
  o.lr *= 1.5;  // above the threshold: the rho test still decides
  const auto above = sgdstab::cross_check(g, o);
  EXPECT_EQ(above.verdict, sgdstab::Verdict::agree) << above.reason;
  EXPECT_GT(*above.rho, 1.0);
  o.schedule = Schedule::reshuffle;
  const auto shuffled = sgdstab::cross_check(g, o);
  EXPECT_EQ(shuffled.verdict, sgdstab::Verdict::inconclusive);
  EXPECT_FALSE(shuffled.rho.has_value());
}

TEST(MonteCarlo, RejectsBadOptions) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(5, 3, 1), 1);
  sgdstab::SimulationOptions o;
  o.lr = 0.1;
  o.batch = 2;
  o.steps = 3;
  EXPECT_NO_THROW(sgdstab::simulate_linearized(g, o));
  auto bad = o;
  bad.lr = 0.0;
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  bad = o;
  bad.batch = 6;
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  bad = o;
  bad.trajectories = 1;
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  bad = o;
  bad.start = VectorXd::Ones(g.rank() + 1);
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  bad = o;
  bad.confidence = 1.0;
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  sgdstab::RadiusEstimateOptions r;
  r.lr = 0.1;
  r.batch = 2;
  r.blocks = 1;
  EXPECT_THROW(sgdstab::estimate_radius(g, r), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::parse<sgdstab::Schedule>("epochs"), sgdstab::invalid_argument);
  EXPECT_EQ(sgdstab::parse<sgdstab::Schedule>("reshuffle"), Schedule::reshuffle);
}

namespace {

// The classic two-minima toy: l_1 = min{x^2, 0.1 (x-1)^2}, l_2 = min{x^2, 1.9 (x-1)^2},
// L = (l_1 + l_2) / 2. Both minima have sharpness 2; x = 1 has non-uniformity.
class TwoMinima : public sgdstab::SgdProblem {
 public:
  sgdstab::Index samples() const override { return 2; }
  sgdstab::Index params() const override { return 1; }
  static double sample_loss(int i, double x) {
    const double k = i == 0 ? 0.1 : 1.9;
    return std::min(x * x, k * (x - 1) * (x - 1));
  }
  static double sample_grad(int i, double x) {
    const double k = i == 0 ? 0.1 : 1.9;
    return x * x <= k * (x - 1) * (x - 1) ? 2 * x : 2 * k * (x - 1);
  }
  double loss(const VectorXd& t) const override { return 0.5 * (sample_loss(0, t(0)) + sample_loss(1, t(0))); }
  VectorXd batch_gradient(const VectorXd& t, const std::vector<sgdstab::Index>& batch, double divisor) const override {
    double g = 0.0;
    for (auto i : batch) g += sample_grad(static_cast<int>(i), t(0));
    return VectorXd::Constant(1, g / divisor);
  }
  VectorXd range_direction(const VectorXd&, sgdstab::Rng& rng) const override {
    return VectorXd::Constant(1, rng.uniform() < 0.5 ? -1.0 : 1.0);
  }
};

// Per-sample curvatures h_i as a 1-D Jacobian (l_i = 1/2 h_i (x - x*)^2 = 1/2 (sqrt(h_i)(x - x*))^2).
sgdstab::Geometry curvature_geometry(double h1, double h2) {
  MatrixXd j(2, 1);
  j << std::sqrt(h1), std::sqrt(h2);
  return sgdstab::Geometry::from_jacobian(j, 1);
}

}  // namespace

TEST(MonteCarlo, TwoMinimaToyEscapesTheNonUniformMinimumOnly) {
  // x = 0: h = (2, 2); x = 1: h = (0.2, 3.8). Closed form (B = 1, n = 2, gamma = 1): 2a / (a^2 + s^2).
  const auto g0 = curvature_geometry(2.0, 2.0), g1 = curvature_geometry(0.2, 3.8);
  const double eta0 = sgdstab::stability_threshold(g0, 1).eta_star;
  const double eta1 = sgdstab::stability_threshold(g1, 1).eta_star;
  EXPECT_REL_NEAR(eta0, 1.0, 1e-10);
  EXPECT_REL_NEAR(eta1, 4.0 / 7.24, 1e-10);
  ASSERT_LT(eta1, 0.7);
  ASSERT_GT(eta0, 0.7);
  const TwoMinima toy;
  sgdstab::EscapeOptions o;
  o.lr = 0.7;
  o.batch = 1;
  o.runs = 200;
  o.max_steps = 5000;
  o.seed = 2;
  const auto at1 = sgdstab::escape_runs(toy, VectorXd::Constant(1, 1.0), o);
  EXPECT_EQ(at1.escaped, 200) << at1.report.message;
  EXPECT_GT(at1.ci_low, 0.95);
  const auto at0 = sgdstab::escape_runs(toy, VectorXd::Constant(1, 0.0), o);
  EXPECT_EQ(at0.returned, 200) << at0.report.message;
  EXPECT_LT(at0.ci_high, 0.05);
  // The typical growth rate is the almost-sure (Lyapunov) rate E log (1 - lr h)^2 per step,
  // below the mean-square rate log rho.
  const double rho1 = sgdstab::spectral_radius(g1, 0.7, 1).rho;
  EXPECT_REL_NEAR(rho1, 0.5 * (0.86 * 0.86 + 1.66 * 1.66), 1e-10);
  const double lyapunov = 0.5 * (std::log(0.86 * 0.86) + std::log(1.66 * 1.66));
  EXPECT_GT(at1.growth_rate, 0.5 * lyapunov);
  EXPECT_LT(at1.growth_rate, std::log(rho1));
}

TEST(MonteCarlo, NonlinearSgdConvergesBelowAndEscapesAboveTheThreshold) {
  sgdstab::MlpSpec s;
  s.widths = {2, 8, 1};
  s.activations = {sgdstab::Activation::tanh};
  const MatrixXd x = ref::gaussian(8, 2, 4);
  const MatrixXd y = sgdstab::teacher_targets(s, x, 40);
  sgdstab::Mlp net(s, 41);
  ASSERT_TRUE(sgdstab::gauss_newton(net, x, y).converged());
  const auto g = sgdstab::geometry_at_minimum(net, x, y);
  const double eta = sgdstab::stability_threshold(g, 2).eta_star;
  const sgdstab::MlpProblem problem(net, x, y);
  sgdstab::EscapeOptions o;
  o.batch = 2;
  o.runs = 40;
  o.epsilon = 1e-4;
  o.max_steps = 20000;
  o.seed = 7;
  o.lr = 0.7 * eta;
  const auto below = sgdstab::escape_runs(problem, net.parameters(), o);
  EXPECT_EQ(below.returned, 40) << below.report.message;
  o.lr = 1.3 * eta;
  const auto above = sgdstab::escape_runs(problem, net.parameters(), o);
  EXPECT_EQ(above.escaped, 40) << above.report.message;
  EXPECT_GT(above.growth_rate, 0.0);
  EXPECT_LT(above.growth_rate, std::log(sgdstab::spectral_radius(g, o.lr, 2).rho) * 1.05);
}

// Reshuffling with n = 3, B = 2: batches of 2 then 1, so the epoch operator is
// not self-adjoint (left and right eigenvectors differ); enumerate all 6 orders.
TEST(MonteCarlo, ReshuffleWithAShortLastBatchMatchesEnumeration) {
  const MatrixXd j = ref::gaussian(3, 2, 12);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  const auto h = ref::per_sample(j, 1);
  const double lr = 0.8 * sgdstab::stability_threshold(g, 2).eta_star;
  const MatrixXd epoch = reshuffle_epoch_operator(h, 2, lr);  // batches of 2, then 1
  EXPECT_GT((epoch - epoch.transpose()).norm(), 1e-6 * epoch.norm());  // really not self-adjoint
  const double rho_step = std::sqrt(epoch.eigenvalues().cwiseAbs().maxCoeff());
  sgdstab::RadiusEstimateOptions o;
  o.lr = lr;
  o.batch = 2;
  o.schedule = Schedule::reshuffle;
  o.blocks = 20000;
  o.confidence = 0.999;
  o.seed = 13;
  const auto est = sgdstab::estimate_radius(g, o);
  ASSERT_TRUE(est.converged()) << est.report.message;
  EXPECT_EQ(est.steps_per_block, 2);
  EXPECT_LE(est.ci_low, rho_step);
  EXPECT_GE(est.ci_high, rho_step);
  EXPECT_LT(est.ci_high - est.ci_low, 0.05 * rho_step);
}

TEST(MonteCarlo, FullBatchCrossCheckAgreesDespiteAZeroWidthInterval) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(5, 3, 6), 1);
  sgdstab::CrossCheckOptions o;
  o.batch = 5;  // B = n without replacement: every sampled block is the same
  o.lr = 0.9 * sgdstab::stability_threshold(g, 5).eta_star;
  o.steps = 5;
  o.trajectories = 200;
  o.blocks = 50;
  const auto rep = sgdstab::cross_check(g, o);
  EXPECT_EQ(rep.verdict, sgdstab::Verdict::agree) << rep.reason;
}

TEST(MonteCarlo, ClopperPearsonMatchesTabulatedValues) {
  // k = 3 of m = 10 at 95 %: [0.0667, 0.6525] (standard tables).
  const auto [low, high] = sgdstab::clopper_pearson(3, 10, 0.95);
  EXPECT_NEAR(low, 0.06674, 5e-5);
  EXPECT_NEAR(high, 0.65245, 5e-5);
  EXPECT_EQ(sgdstab::clopper_pearson(0, 10, 0.95).first, 0.0);
  EXPECT_EQ(sgdstab::clopper_pearson(10, 10, 0.95).second, 1.0);
  EXPECT_NEAR(sgdstab::clopper_pearson(0, 10, 0.95).second, 1.0 - std::pow(0.025, 0.1), 1e-12);
  EXPECT_THROW(sgdstab::clopper_pearson(11, 10, 0.95), sgdstab::invalid_argument);
}

// Every result reads the same way (solver.hpp): a Result whose status() and
// converged() come from its report, which says what happened and how long
// the call took.
static_assert(std::is_base_of_v<sgdstab::Result, sgdstab::ThresholdResult> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::RadiusResult> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::MomentumThresholdResult> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::RegionPoint> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::StabilityRegion> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::StabilityBounds> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::WorstAlignment> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::MinimizeResult> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::SimulationResult> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::RadiusEstimate> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::CrossCheckReport> &&
              std::is_base_of_v<sgdstab::Result, sgdstab::EscapeReport>);

namespace {

template <class R>
void expect_reported(const R& r, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.status(), sgdstab::Status::converged) << r.report.message;
  EXPECT_EQ(r.converged(), r.report.status == sgdstab::Status::converged);
  EXPECT_FALSE(r.report.message.empty());
  EXPECT_GT(r.report.seconds, 0.0);
}

}  // namespace

TEST(Reports, EveryResultCarriesOneReport) {
  sgdstab::MlpSpec s;
  s.widths = {2, 6, 1};
  s.activations = {sgdstab::Activation::tanh};
  const MatrixXd x = ref::gaussian(6, 2, 4);
  const MatrixXd y = sgdstab::teacher_targets(s, x, 40);
  sgdstab::Mlp net(s, 41);
  const auto min = sgdstab::gauss_newton(net, x, y);
  expect_reported(min, "gauss_newton");
  EXPECT_GT(min.report.iterations, 0);
  const auto g = sgdstab::geometry_at_minimum(net, x, y);
  const auto t = sgdstab::stability_threshold(g, 2);
  expect_reported(t, "stability_threshold");
  expect_reported(sgdstab::spectral_radius(g, 0.5 * t.eta_star, 2), "spectral_radius");
  for (const auto& r : sgdstab::threshold_curve(g, {1, 3})) expect_reported(r, "threshold_curve");
  const auto region = sgdstab::stability_region(g, {Sampling::with_replacement}, {1, 3});
  expect_reported(region, "stability_region");
  EXPECT_GT(region.report.matvecs, 0);
  for (const auto& p : region.curves.front().points) {
    EXPECT_TRUE(p.converged()) << p.report.message;
    EXPECT_EQ(p.report.seconds, region.report.seconds);  // made together: the whole call's
  }
  expect_reported(sgdstab::stability_bounds(g, 2), "stability_bounds");
  expect_reported(sgdstab::worst_case_alignment(g), "worst_case_alignment");
  const sgdstab::Momentum mo{0.5, false};
  expect_reported(sgdstab::momentum_threshold(g, 2, Sampling::with_replacement, mo), "momentum_threshold");
  expect_reported(sgdstab::momentum_spectral_radius(g, 0.1 * t.eta_star, 2, Sampling::with_replacement, mo),
                  "momentum_spectral_radius");
  for (const auto& r : sgdstab::momentum_threshold_curve(g, {1, 3}, Sampling::with_replacement, mo))
    expect_reported(r, "momentum_threshold_curve");
  expect_reported(sgdstab::stability_region(g, {Sampling::with_replacement}, {1, 3}, mo), "momentum region");
  sgdstab::SimulationOptions so;
  so.lr = 0.5 * t.eta_star;
  so.batch = 2;
  so.steps = 5;
  so.trajectories = 20;
  expect_reported(sgdstab::simulate_linearized(g, so), "simulate_linearized");
  sgdstab::RadiusEstimateOptions ro;
  ro.lr = so.lr;
  ro.batch = 2;
  ro.blocks = 50;
  const auto est = sgdstab::estimate_radius(g, ro);
  expect_reported(est, "estimate_radius");
  EXPECT_GT(est.report.matvecs, 0);
  sgdstab::CrossCheckOptions co;
  co.lr = so.lr;
  co.batch = 2;
  co.steps = 5;
  co.trajectories = 50;
  co.blocks = 50;
  expect_reported(sgdstab::cross_check(g, co), "cross_check");
  const sgdstab::MlpProblem problem(net, x, y);
  sgdstab::EscapeOptions eo;
  eo.batch = 2;
  eo.runs = 3;
  eo.epsilon = 1e-4;
  eo.max_steps = 100;
  eo.lr = so.lr;
  const auto esc = sgdstab::escape_runs(problem, net.parameters(), eo);
  expect_reported(esc, "escape_runs");
  EXPECT_EQ(esc.escaped + esc.returned + esc.undecided, esc.runs);
}
