// The MLP family against independent references: central finite differences
// of the forward pass (Jacobian, gradient, Hessian-vector product), the
// closed-form Jacobian of a deep linear network, and Phi Phi^T for an RFM.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <string>
#include <tuple>

#include "reference.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/mlp.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Activation;
using sgdstab::Mlp;
using sgdstab::MlpSpec;

namespace {

// Max-abs difference relative to the larger of the two max-abs magnitudes.
double rel_err(const MatrixXd& a, const MatrixXd& b) {
  const double scale = std::max({a.cwiseAbs().maxCoeff(), b.cwiseAbs().maxCoeff(), 1e-300});
  return (a - b).cwiseAbs().maxCoeff() / scale;
}

// Stacked outputs as a sample-major vector (row i*c + k).
VectorXd flat(const MatrixXd& f) {
  VectorXd v(f.size());
  for (Eigen::Index i = 0; i < f.rows(); ++i)
    for (Eigen::Index k = 0; k < f.cols(); ++k) v(i * f.cols() + k) = f(i, k);
  return v;
}

// Central-difference Jacobian of theta -> f(X; theta), built only from forward().
MatrixXd fd_jacobian(Mlp net, const MatrixXd& x, double h = 1e-6) {
  const VectorXd theta = net.parameters();
  MatrixXd j(x.rows() * net.outputs(), theta.size());
  for (Eigen::Index q = 0; q < theta.size(); ++q) {
    VectorXd tp = theta, tm = theta;
    tp(q) += h;
    tm(q) -= h;
    net.set_parameters(tp);
    const VectorXd fp = flat(net.forward(x));
    net.set_parameters(tm);
    const VectorXd fm = flat(net.forward(x));
    j.col(q) = (fp - fm) / (2.0 * h);
  }
  return j;
}

// Central-difference gradient of the loss, from loss() only.
VectorXd fd_gradient(Mlp net, const MatrixXd& x, const MatrixXd& y, double h = 1e-6) {
  const VectorXd theta = net.parameters();
  VectorXd g(theta.size());
  for (Eigen::Index q = 0; q < theta.size(); ++q) {
    VectorXd tp = theta, tm = theta;
    tp(q) += h;
    tm(q) -= h;
    net.set_parameters(tp);
    const double lp = net.loss(x, y);
    net.set_parameters(tm);
    g(q) = (lp - net.loss(x, y)) / (2.0 * h);
  }
  return g;
}

MlpSpec make_spec(Eigen::Index depth, Activation act, bool bias, const std::vector<bool>& trainable,
                  Eigen::Index c = 2) {
  MlpSpec s;
  s.widths.push_back(3);
  for (Eigen::Index l = 1; l < depth; ++l) s.widths.push_back(4 + l);
  s.widths.push_back(c);
  if (depth > 1) s.activations = {act};
  s.bias = bias;
  s.trainable = trainable;
  s.init = sgdstab::Init::lecun;
  return s;
}

// Nonzero biases so that the bias paths are exercised away from b = 0.
void randomize_biases(Mlp& net, std::uint64_t seed) {
  if (!net.spec().bias) return;
  for (Eigen::Index l = 1; l <= net.spec().layers(); ++l)
    net.set_bias(l, 0.3 * ref::gaussian(net.bias(l).size(), 1, seed + static_cast<std::uint64_t>(l)).col(0));
}

using Case = std::tuple<int, Activation, bool, int>;  // depth, activation, bias, frozen-layer pattern

class MlpDerivatives : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const auto [depth, act, bias, pattern] = GetParam();
    std::vector<bool> trainable;
    if (pattern == 1) {  // first layer frozen
      trainable.assign(static_cast<std::size_t>(depth), true);
      trainable[0] = false;
    } else if (pattern == 2) {  // only the middle/last-but-one layer trainable
      trainable.assign(static_cast<std::size_t>(depth), false);
      trainable[static_cast<std::size_t>(depth > 1 ? depth - 2 : 0)] = true;
    }
    net_ = std::make_unique<Mlp>(make_spec(depth, act, bias, trainable), 11 + static_cast<std::uint64_t>(depth));
    randomize_biases(*net_, 5);
    x_ = ref::gaussian(4, 3, 7);
    y_ = ref::gaussian(4, 2, 8);  // not interpolated: the residual term of the Hessian is live
  }
  std::unique_ptr<Mlp> net_;
  MatrixXd x_, y_;
};

TEST_P(MlpDerivatives, JacobianMatchesFiniteDifferences) {
  const MatrixXd j = net_->jacobian(x_);
  ASSERT_EQ(j.rows(), 8);
  ASSERT_EQ(j.cols(), net_->num_parameters());
  EXPECT_LT(rel_err(j, fd_jacobian(*net_, x_)), 1e-7);
}

TEST_P(MlpDerivatives, GramWithoutJacobianEqualsJJt) {
  const MatrixXd j = net_->jacobian(x_);
  EXPECT_LT(rel_err(net_->gram(x_), j * j.transpose()), 1e-12);
}

TEST_P(MlpDerivatives, GradientMatchesFiniteDifferences) {
  EXPECT_LT(rel_err(net_->gradient(x_, y_), fd_gradient(*net_, x_, y_)), 1e-7);
}

TEST_P(MlpDerivatives, ProductsMatchTheJacobian) {
  const MatrixXd j = net_->jacobian(x_);
  const VectorXd v = ref::gaussian(net_->num_parameters(), 1, 21).col(0);
  const VectorXd u = ref::gaussian(j.rows(), 1, 22).col(0);
  EXPECT_LT(rel_err(net_->jvp(x_, v), j * v), 1e-12);
  EXPECT_LT(rel_err(net_->vjp(x_, u), j.transpose() * u), 1e-12);
  EXPECT_LT(rel_err(net_->gauss_newton_vp(x_, v), j.transpose() * (j * v) / 4.0), 1e-12);
}

TEST_P(MlpDerivatives, HessianVectorProductMatchesDifferencedGradient) {
  const VectorXd v = ref::gaussian(net_->num_parameters(), 1, 23).col(0);
  const VectorXd theta = net_->parameters();
  const double h = 1e-5;
  Mlp plus = *net_, minus = *net_;
  plus.set_parameters(theta + h * v);
  minus.set_parameters(theta - h * v);
  const VectorXd fd = (plus.gradient(x_, y_) - minus.gradient(x_, y_)) / (2.0 * h);
  EXPECT_LT(rel_err(net_->hvp(x_, y_, v), fd), 1e-6);
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const auto [depth, act, bias, pattern] = info.param;
  return "depth" + std::to_string(depth) + "_" + sgdstab::to_string(act) + (bias ? "_bias" : "_nobias") +
         (pattern == 0 ? "_all" : pattern == 1 ? "_frozen1" : "_onlyone");
}

// Every depth 1-4 x activation x bias x frozen pattern (a one-layer network
// has no layer to freeze besides its only one, so pattern 1 starts at depth 2).
std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (int depth : {1, 2, 3, 4})
    for (Activation a : {Activation::identity, Activation::relu, Activation::tanh, Activation::erf,
                         Activation::softplus})
      for (bool bias : {false, true})
        for (int pattern : {0, 1, 2})
          if (!(depth == 1 && pattern == 1)) out.emplace_back(depth, a, bias, pattern);
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, MlpDerivatives, ::testing::ValuesIn(all_cases()), case_name);

}  // namespace

// The residual term of the Hessian is visible: away from a minimum, for a
// smooth activation, hvp differs from the Gauss-Newton product.
TEST(Mlp, HessianHasResidualTermAwayFromMinimum) {
  Mlp net(make_spec(3, Activation::tanh, true, {}), 3);
  const MatrixXd x = ref::gaussian(5, 3, 1), y = ref::gaussian(5, 2, 2);
  const VectorXd v = ref::gaussian(net.num_parameters(), 1, 3).col(0);
  EXPECT_GT(rel_err(net.hvp(x, y, v), net.gauss_newton_vp(x, v)), 1e-3);
  // With targets equal to the outputs (an interpolating minimum) they agree.
  const MatrixXd y0 = net.forward(x);
  EXPECT_LT(rel_err(net.hvp(x, y0, v), net.gauss_newton_vp(x, v)), 1e-12);
}

// Deep linear network: d f_k / d W_l(a, b) = [W_L ... W_{l+1}]_{k a} [W_{l-1} ... W_1 x]_b.
TEST(Mlp, DeepLinearJacobianMatchesClosedForm) {
  MlpSpec s;
  s.widths = {3, 4, 5, 2};
  s.activations = {Activation::identity};
  Mlp net(s, 9);
  const MatrixXd x = ref::gaussian(3, 3, 4);
  const MatrixXd j = net.jacobian(x);
  const Eigen::Index L = 3, c = 2;
  MatrixXd expected(x.rows() * c, net.num_parameters());
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    Eigen::Index off = 0;
    for (Eigen::Index l = 1; l <= L; ++l) {
      MatrixXd above = MatrixXd::Identity(c, c);  // W_L ... W_{l+1}
      for (Eigen::Index k = L; k > l; --k) above = above * net.weight(k);
      VectorXd below = x.row(i).transpose();  // W_{l-1} ... W_1 x
      for (Eigen::Index k = 1; k < l; ++k) below = net.weight(k) * below;
      const MatrixXd& w = net.weight(l);
      for (Eigen::Index k = 0; k < c; ++k)
        for (Eigen::Index a = 0; a < w.rows(); ++a)
          for (Eigen::Index b = 0; b < w.cols(); ++b) expected(i * c + k, off + a * w.cols() + b) = above(k, a) * below(b);
      off += w.size();
    }
  }
  EXPECT_LT(rel_err(j, expected), 1e-13);
}

// Random feature model: K[(i,k),(j,k')] = delta_kk' (s^2 phi_i . phi_j + [bias]).
TEST(Mlp, RandomFeatureGramIsPhiPhiT) {
  for (bool bias : {false, true}) {
    MlpSpec s;
    s.widths = {4, 30, 3};
    s.activations = {Activation::relu};
    s.trainable = {false, true};
    s.bias = bias;
    s.parametrization = sgdstab::Parametrization::ntk;
    Mlp net(s, 2);
    const MatrixXd x = ref::gaussian(6, 4, 3);
    net.set_bias(1, bias ? VectorXd(VectorXd::LinSpaced(30, -0.5, 0.5)) : VectorXd());
    MatrixXd pre = x * net.weight(1).transpose() * net.multiplier(1);
    if (bias) pre.rowwise() += net.bias(1).transpose();
    const MatrixXd phi = pre.cwiseMax(0.0);
    const double s2 = net.multiplier(2) * net.multiplier(2);
    const MatrixXd kx = s2 * phi * phi.transpose() + (bias ? 1.0 : 0.0) * MatrixXd::Ones(6, 6);
    MatrixXd expected = MatrixXd::Zero(18, 18);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j)
        for (int k = 0; k < 3; ++k) expected(i * 3 + k, j * 3 + k) = kx(i, j);
    EXPECT_LT(rel_err(net.gram(x), expected), 1e-13) << "bias = " << bias;
    EXPECT_LT(rel_err(net.features(x), phi), 1e-15);
    EXPECT_TRUE(net.spec().linear_in_parameters());
    EXPECT_EQ(net.num_parameters(), 3 * 30 + (bias ? 3 : 0));
  }
}

TEST(Mlp, ParameterLayoutIsRowMajorWeightsThenBias) {
  MlpSpec s = make_spec(2, Activation::tanh, true, {});
  Mlp net(s, 1);
  randomize_biases(net, 3);
  const VectorXd theta = net.parameters();
  const MatrixXd& w1 = net.weight(1);
  EXPECT_EQ(theta(0), w1(0, 0));
  EXPECT_EQ(theta(1), w1(0, 1));
  EXPECT_EQ(theta(w1.cols()), w1(1, 0));
  EXPECT_EQ(theta(w1.size()), net.bias(1)(0));
  EXPECT_EQ(theta(w1.size() + w1.rows()), net.weight(2)(0, 0));
  Mlp other(s, 99);
  other.set_parameters(theta);
  EXPECT_EQ(other.parameters(), theta);
  EXPECT_EQ(other.forward(ref::gaussian(2, 3, 1)), net.forward(ref::gaussian(2, 3, 1)));
}

TEST(Mlp, InitializationIsSeededAndScaled) {
  MlpSpec s;
  s.widths = {400, 500, 1};
  s.activations = {Activation::relu};
  Mlp a(s, 7), b(s, 7), c(s, 8);
  EXPECT_EQ(a.parameters(), b.parameters());
  EXPECT_NE(a.parameters(), c.parameters());
  // He: Var W_1 = 2 / 400. 200000 draws: relative standard error of the variance ~ 0.3%.
  const MatrixXd& w = a.weight(1);
  const double var = w.squaredNorm() / static_cast<double>(w.size());
  EXPECT_NEAR(var / (2.0 / 400.0), 1.0, 0.02);
  EXPECT_NEAR(w.mean(), 0.0, 5.0 * std::sqrt(2.0 / 400.0 / static_cast<double>(w.size())));
  // NTK: unit weights, multiplier sqrt(2 / fan_in); same function class.
  s.parametrization = sgdstab::Parametrization::ntk;
  Mlp n(s, 7);
  EXPECT_NEAR(n.multiplier(1), std::sqrt(2.0 / 400.0), 1e-15);
  EXPECT_NEAR(n.weight(1).squaredNorm() / static_cast<double>(w.size()), 1.0, 0.02);
  Mlp standard(MlpSpec{{400, 500, 1}, {Activation::relu}, false, {}, sgdstab::Parametrization::standard,
                       sgdstab::Init::he, 1.0},
               1);
  standard.set_weight(1, n.weight(1) * n.multiplier(1));
  standard.set_weight(2, n.weight(2) * n.multiplier(2));
  const MatrixXd x = ref::gaussian(3, 400, 2);
  EXPECT_LT(rel_err(standard.forward(x), n.forward(x)), 1e-13);
  s.parametrization = sgdstab::Parametrization::mean_field;
  EXPECT_NEAR(Mlp(s, 7).multiplier(2), 1.0 / 500.0, 1e-18);
}

TEST(Mlp, RejectsBadInput) {
  using sgdstab::invalid_argument;
  MlpSpec s = make_spec(2, Activation::relu, false, {});
  Mlp net(s, 1);
  const MatrixXd x = ref::gaussian(3, 3, 1);
  EXPECT_THROW(net.forward(ref::gaussian(3, 4, 1)), invalid_argument);
  EXPECT_THROW(net.forward(MatrixXd(0, 3)), invalid_argument);
  MatrixXd bad = x;
  bad(1, 1) = NAN;
  EXPECT_THROW(net.forward(bad), invalid_argument);
  EXPECT_THROW(net.loss(x, ref::gaussian(3, 3, 1)), invalid_argument);  // c = 2
  EXPECT_THROW(net.set_parameters(VectorXd::Zero(net.num_parameters() + 1)), invalid_argument);
  VectorXd nan_theta = net.parameters();
  nan_theta(0) = INFINITY;
  EXPECT_THROW(net.set_parameters(nan_theta), invalid_argument);
  EXPECT_THROW(net.jvp(x, VectorXd::Zero(3)), invalid_argument);
  EXPECT_THROW(net.vjp(x, VectorXd::Zero(5)), invalid_argument);
  EXPECT_THROW(net.batch_gradient(x, ref::gaussian(3, 2, 1), {0, 3}, 2.0), invalid_argument);
  MlpSpec t = s;
  t.widths = {3};
  EXPECT_THROW(Mlp(t, 1), invalid_argument);
  t = s;
  t.widths = {3, 0, 2};
  EXPECT_THROW(Mlp(t, 1), invalid_argument);
  t = s;
  t.activations = {Activation::relu, Activation::tanh};  // one hidden layer
  EXPECT_THROW(Mlp(t, 1), invalid_argument);
  t = s;
  t.trainable = {false, false};
  EXPECT_THROW(Mlp(t, 1), invalid_argument);
  t = s;
  t.trainable = {true};
  EXPECT_THROW(Mlp(t, 1), invalid_argument);
  EXPECT_THROW(sgdstab::parse<sgdstab::Activation>("sigmoid"), invalid_argument);
  EXPECT_EQ(sgdstab::parse<sgdstab::Activation>("linear"), Activation::identity);
}

TEST(Mlp, BatchGradientIsMeanOfPerSampleGradients) {
  Mlp net(make_spec(2, Activation::tanh, true, {}), 4);
  const MatrixXd x = ref::gaussian(5, 3, 1), y = ref::gaussian(5, 2, 2);
  // Reference: gradient of sample i alone is the full gradient of the one-row problem.
  VectorXd expected = VectorXd::Zero(net.num_parameters());
  const std::vector<Eigen::Index> batch = {1, 3, 3};
  for (Eigen::Index i : batch) expected += net.gradient(x.row(i), y.row(i));
  expected /= 3.0;
  EXPECT_LT(rel_err(net.batch_gradient(x, y, batch, 3.0), expected), 1e-13);
  EXPECT_EQ(net.batch_gradient(x, y, {}, 3.0), VectorXd::Zero(net.num_parameters()));
}
