// Minimizers against independent references: the pseudo-inverse (SVD) for
// minimum-norm least squares, the normal equations, stationarity and zero
// loss at the points found, and the classical fact that GD/SGD started at 0
// on a linear model converge to the minimum-norm interpolant.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <set>

#include "reference.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Activation;
using sgdstab::Mlp;
using sgdstab::MlpSpec;
using sgdstab::Sampling;

namespace {

MlpSpec linear_spec(Eigen::Index d, Eigen::Index c, bool bias = false) {
  MlpSpec s;
  s.widths = {d, c};
  s.bias = bias;
  return s;
}

MatrixXd pinv_solution(const MatrixXd& a, const MatrixXd& y) {
  Eigen::JacobiSVD<MatrixXd> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const VectorXd s = svd.singularValues();
  VectorXd inv = VectorXd::Zero(s.size());
  for (Eigen::Index i = 0; i < s.size(); ++i)
    if (s(i) > 1e-12 * s(0)) inv(i) = 1.0 / s(i);
  return svd.matrixV() * inv.asDiagonal() * svd.matrixU().transpose() * y;
}

double max_abs(const MatrixXd& m) { return m.cwiseAbs().maxCoeff(); }

}  // namespace

TEST(Minimize, MinimumNormSolutionOfLinearModelIsThePseudoInverse) {
  const MatrixXd x = ref::gaussian(5, 8, 1), y = ref::gaussian(5, 2, 2);
  Mlp net(linear_spec(8, 2), 3);
  const auto res = sgdstab::minimum_norm_solution(net, x, y);
  EXPECT_TRUE(res.converged()) << res.report.message;
  EXPECT_LE(res.max_residual, 1e-10 * max_abs(y));
  const MatrixXd w = pinv_solution(x, y).transpose();  // c x d
  EXPECT_LT(max_abs(net.weight(1) - w), 1e-12);
  // Any other interpolant (add a null-space direction of X) has a larger norm.
  Eigen::FullPivLU<MatrixXd> lu(x);
  const MatrixXd null = lu.kernel();
  ASSERT_GT(null.cols(), 0);
  const MatrixXd other = net.weight(1) + 0.1 * VectorXd::Ones(2) * null.col(0).transpose();
  EXPECT_LT(max_abs(x * other.transpose() - y), 1e-12);
  EXPECT_GT(other.norm(), net.weight(1).norm());
}

TEST(Minimize, MinimumNormRandomFeatureModelWithBias) {
  MlpSpec s;
  s.widths = {3, 40, 2};
  s.activations = {Activation::relu};
  s.trainable = {false, true};
  s.bias = true;
  Mlp net(s, 4);
  const MatrixXd x = ref::gaussian(12, 3, 5), y = ref::gaussian(12, 2, 6);
  const auto res = sgdstab::minimum_norm_solution(net, x, y);
  ASSERT_TRUE(res.converged()) << res.report.message;
  EXPECT_LT(net.loss(x, y), 1e-20);
  MatrixXd design(12, 41);
  design << net.multiplier(2) * net.features(x), VectorXd::Ones(12);
  const MatrixXd sol = pinv_solution(design, y);
  EXPECT_LT(max_abs(net.weight(2) - sol.topRows(40).transpose()), 1e-10);
  EXPECT_LT(max_abs(net.bias(2) - sol.row(40).transpose()), 1e-10);
}

TEST(Minimize, MinimumNormReportsWhenInterpolationIsImpossible) {
  const MatrixXd x = ref::gaussian(10, 3, 1), y = ref::gaussian(10, 1, 2);
  Mlp net(linear_spec(3, 1), 1);
  const auto res = sgdstab::minimum_norm_solution(net, x, y);
  EXPECT_FALSE(res.converged());
  EXPECT_NE(res.report.message.find("cannot interpolate"), std::string::npos) << res.report.message;
  // It is the least-squares solution: the normal equations hold.
  const VectorXd w = (x.transpose() * x).ldlt().solve(x.transpose() * y);
  EXPECT_LT((net.weight(1).transpose() - w).norm(), 1e-12);
  MlpSpec deep;
  deep.widths = {3, 5, 1};
  deep.activations = {Activation::tanh};
  Mlp nonlinear(deep, 1);
  EXPECT_THROW(sgdstab::minimum_norm_solution(nonlinear, x, y), sgdstab::invalid_argument);
}

namespace {

struct TeacherProblem {
  MatrixXd x, y;
};

TeacherProblem teacher_problem(const MlpSpec& teacher, Eigen::Index n, std::uint64_t seed) {
  TeacherProblem p;
  p.x = ref::gaussian(n, teacher.inputs(), seed);
  p.y = sgdstab::teacher_targets(teacher, p.x, seed + 100);
  return p;
}

void expect_minimum(const Mlp& net, const MatrixXd& x, const MatrixXd& y, const sgdstab::MinimizeResult& res) {
  EXPECT_TRUE(res.converged()) << res.report.message;
  EXPECT_LE(res.max_residual, 1e-10 * max_abs(y));
  EXPECT_LE(max_abs(net.residuals(x, y)), 1e-10 * max_abs(y));  // recomputed independently of res
  EXPECT_LT(net.gradient(x, y).norm(), 1e-9);
  EXPECT_LT(net.loss(x, y), 1e-19);
}

}  // namespace

TEST(Minimize, GaussNewtonReachesInterpolationScalarOutput) {
  MlpSpec s;
  s.widths = {3, 20, 1};
  s.activations = {Activation::tanh};
  s.bias = true;
  const auto p = teacher_problem(s, 12, 1);
  Mlp net(s, 2);
  const auto res = sgdstab::gauss_newton(net, p.x, p.y);
  expect_minimum(net, p.x, p.y, res);
  EXPECT_EQ(res.method, "gauss-newton");
  EXPECT_GT(res.report.iterations, 0);
  EXPECT_EQ(static_cast<Eigen::Index>(res.loss_history.size()), res.report.iterations + 1);
}

TEST(Minimize, GaussNewtonReachesInterpolationMultiOutputRelu) {
  MlpSpec s;
  s.widths = {4, 30, 3};
  s.activations = {Activation::relu};
  s.bias = true;
  const auto p = teacher_problem(s, 10, 3);  // p = 243 >= n c = 30: sample space
  Mlp net(s, 4);
  expect_minimum(net, p.x, p.y, sgdstab::gauss_newton(net, p.x, p.y));
}

TEST(Minimize, GaussNewtonParameterSpaceDeepErf) {
  MlpSpec s;
  s.widths = {2, 4, 3, 1};
  s.activations = {Activation::erf};
  const auto p = teacher_problem(s, 40, 5);  // p = 23 < n c = 40: parameter space
  // Realizable: start from a perturbation of the teacher.
  Mlp net(s, 105);
  Mlp start(s, 6);
  net.set_parameters(net.parameters() + 0.05 * start.parameters());
  expect_minimum(net, p.x, p.y, sgdstab::gauss_newton(net, p.x, p.y));
}

TEST(Minimize, GradientDescentFromZeroFindsTheMinimumNormSolution) {
  const MatrixXd x = ref::gaussian(6, 10, 1), y = ref::gaussian(6, 1, 2);
  Mlp net(linear_spec(10, 1), 3);
  net.set_parameters(VectorXd::Zero(10));
  const double lmax = ref::SymEigenSolver(x.transpose() * x / 6.0).eigenvalues().maxCoeff();
  sgdstab::TrainOptions o;
  o.lr = 1.0 / lmax;
  o.batch = 6;
  o.max_steps = 200000;
  const auto res = sgdstab::train_sgd(net, x, y, o);
  EXPECT_EQ(res.method, "gd");
  expect_minimum(net, x, y, res);
  EXPECT_LT((net.weight(1).transpose() - pinv_solution(x, y)).norm(), 1e-8);
}

TEST(Minimize, SgdFromZeroStaysInTheRowSpaceAndInterpolates) {
  const MatrixXd x = ref::gaussian(8, 12, 3), y = ref::gaussian(8, 1, 4);
  for (Sampling scheme : {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli}) {
    Mlp net(linear_spec(12, 1), 3);
    net.set_parameters(VectorXd::Zero(12));
    sgdstab::TrainOptions o;
    o.lr = 0.02;
    o.batch = 2;
    o.sampling = scheme;
    o.seed = 9;
    o.max_steps = 2000000;
    const auto res = sgdstab::train_sgd(net, x, y, o);
    EXPECT_EQ(res.method, "sgd");
    expect_minimum(net, x, y, res);
    EXPECT_LT((net.weight(1).transpose() - pinv_solution(x, y)).norm(), 1e-7) << sgdstab::to_string(scheme);
  }
}

TEST(Minimize, TrainingReportsDivergence) {
  const MatrixXd x = ref::gaussian(6, 3, 1), y = ref::gaussian(6, 1, 2);
  Mlp net(linear_spec(3, 1), 3);
  sgdstab::TrainOptions o;
  o.lr = 100.0;
  o.batch = 6;
  o.max_steps = 10000;
  const auto res = sgdstab::train_sgd(net, x, y, o);
  EXPECT_FALSE(res.converged());
  EXPECT_EQ(res.status(), sgdstab::Status::diverged) << res.report.message;
  EXPECT_EQ(res.report.message.rfind("diverged", 0), 0u) << res.report.message;
  o.lr = -1.0;
  EXPECT_THROW(sgdstab::train_sgd(net, x, y, o), sgdstab::invalid_argument);
  o.lr = 0.1;
  o.batch = 7;
  EXPECT_THROW(sgdstab::train_sgd(net, x, y, o), sgdstab::invalid_argument);
}

TEST(Minimize, DrawBatchFollowsTheSamplingScheme) {
  sgdstab::Rng rng(5);
  const Eigen::Index n = 7, b = 3;
  std::vector<double> count(n, 0.0);
  const int draws = 70000;
  for (int t = 0; t < draws; ++t) {
    const auto batch = sgdstab::draw_batch(Sampling::without_replacement, n, b, rng);
    ASSERT_EQ(static_cast<Eigen::Index>(batch.size()), b);
    ASSERT_EQ(std::set<Eigen::Index>(batch.begin(), batch.end()).size(), batch.size());
    for (auto i : batch) count[static_cast<std::size_t>(i)] += 1.0;
  }
  // Each index appears with probability B/n: binomial standard error ~ 120.
  for (double c : count) EXPECT_NEAR(c, draws * 3.0 / 7.0, 600.0);
  double total = 0.0;
  for (int t = 0; t < draws; ++t) total += static_cast<double>(sgdstab::draw_batch(Sampling::bernoulli, n, b, rng).size());
  EXPECT_NEAR(total / draws, 3.0, 0.03);
  for (int t = 0; t < 100; ++t) {  // large batches use the mark array
    const auto big = sgdstab::draw_batch(Sampling::without_replacement, 50, 40, rng);
    ASSERT_EQ(std::set<Eigen::Index>(big.begin(), big.end()).size(), 40u);
    for (auto i : big) ASSERT_TRUE(i >= 0 && i < 50);
  }
  const auto with = sgdstab::draw_batch(Sampling::with_replacement, n, b, rng);
  EXPECT_EQ(static_cast<Eigen::Index>(with.size()), b);
  EXPECT_THROW(sgdstab::draw_batch(Sampling::with_replacement, n, 8, rng), sgdstab::invalid_argument);
}

TEST(Minimize, GeometryAtMinimumRefusesNonMinimaAndMatchesTheJacobianPath) {
  MlpSpec s;
  s.widths = {3, 12, 1};
  s.activations = {Activation::tanh};
  const auto p = teacher_problem(s, 8, 11);
  Mlp net(s, 12);
  try {
    sgdstab::geometry_at_minimum(net, p.x, p.y);
    ADD_FAILURE() << "expected a refusal";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not an interpolating minimum"), std::string::npos) << e.what();
  }
  sgdstab::MinimumCheck allow;
  allow.allow_nonzero_residual = true;
  EXPECT_NO_THROW(sgdstab::geometry_at_minimum(net, p.x, p.y, allow));
  ASSERT_TRUE(sgdstab::gauss_newton(net, p.x, p.y).converged());
  // At the minimum the exact Hessian is the Gauss-Newton matrix.
  const VectorXd v = ref::gaussian(net.num_parameters(), 1, 1).col(0);
  const VectorXd hv = net.hvp(p.x, p.y, v), gv = net.gauss_newton_vp(p.x, v);
  EXPECT_LT((hv - gv).norm(), 1e-8 * gv.norm());
  const auto g = sgdstab::geometry_at_minimum(net, p.x, p.y);  // p = 48 >= n c = 8: Gram path
  const MatrixXd j = net.jacobian(p.x);
  const auto gj = sgdstab::Geometry::from_jacobian(j, 1);
  const double lmax = ref::SymEigenSolver(j.transpose() * j / 8.0).eigenvalues().maxCoeff();
  EXPECT_REL_NEAR(g.lambda_max(), lmax, 1e-10);
  EXPECT_REL_NEAR(sgdstab::stability_threshold(g, 2).eta_star, sgdstab::stability_threshold(gj, 2).eta_star, 1e-9);
}

TEST(Minimize, OverflowedOutputsAreNeverAMinimum) {
  Mlp net(linear_spec(2, 1), 1);
  net.set_weight(1, MatrixXd::Constant(1, 2, 1e300));
  const MatrixXd x = MatrixXd::Constant(3, 2, 1e10), y = MatrixXd::Zero(3, 1);
  EXPECT_THROW(sgdstab::geometry_at_minimum(net, x, y), sgdstab::invalid_argument);
  sgdstab::MinimizeOptions o;
  o.max_iterations = 3;
  const auto res = sgdstab::gauss_newton(net, x, y, o);  // reports, does not throw
  EXPECT_FALSE(res.converged());
  EXPECT_FALSE(std::isfinite(res.max_residual)) << res.report.message;
}
