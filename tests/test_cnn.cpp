// The LibTorch module against the Eigen implementation (itself tested against
// finite differences and closed forms): outputs, per-sample Jacobians and the
// Gram agree to 1e-10 in double precision; devices are explicit.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include "reference.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using sgdstab::Activation;

namespace {

double rel_err(const MatrixXd& a, const MatrixXd& b) {
  const double scale = std::max({a.cwiseAbs().maxCoeff(), b.cwiseAbs().maxCoeff(), 1e-300});
  return (a - b).cwiseAbs().maxCoeff() / scale;
}

// Central differences of the forward pass ((n c) x p, rows i*c + k); leaves
// the parameters as they were.
MatrixXd fd_jacobian(sgdstab::cnn::Cnn& net, const MatrixXd& x, double h = 1e-6) {
  const Eigen::VectorXd theta = net.parameters();
  const sgdstab::Index c = net.spec().outputs;
  MatrixXd fd(x.rows() * c, theta.size());
  for (sgdstab::Index q = 0; q < theta.size(); ++q) {
    Eigen::VectorXd tp = theta, tm = theta;
    tp(q) += h;
    tm(q) -= h;
    net.set_parameters(tp);
    const MatrixXd fp = net.forward(x);
    net.set_parameters(tm);
    const MatrixXd fm = net.forward(x);
    for (sgdstab::Index i = 0; i < x.rows(); ++i)
      for (sgdstab::Index k = 0; k < c; ++k) fd(i * c + k, q) = (fp(i, k) - fm(i, k)) / (2 * h);
  }
  net.set_parameters(theta);
  return fd;
}

// Full-batch GD at half the GD limit of the Gauss-Newton matrix at the start,
// to max|f - y| <= tol max|y| (a minimum for the tests that need one).
bool train_to_interpolation(sgdstab::cnn::Cnn& net, const MatrixXd& x, const MatrixXd& y, double tol) {
  sgdstab::cnn::CnnTrainOptions o;
  o.batch = x.rows();
  o.max_steps = 200000;
  o.residual_tolerance = tol;
  o.lr = 1.0 / sgdstab::Geometry::from_gram(net.gram(x), net.spec().outputs).lambda_max();
  return sgdstab::cnn::train_cnn(net, x, y, o).converged();
}

// A CnnSpec for small test networks.
sgdstab::cnn::CnnSpec tiny_spec(int64_t in_channels, int64_t side, std::vector<int64_t> channels,
                                std::vector<int64_t> hidden, int64_t outputs) {
  sgdstab::cnn::CnnSpec spec;
  spec.in_channels = in_channels;
  spec.height = spec.width = side;
  spec.channels = std::move(channels);
  spec.hidden = std::move(hidden);
  spec.outputs = outputs;
  return spec;
}

struct Case {
  std::vector<sgdstab::Index> widths;
  Activation act;
  bool bias;
  std::vector<bool> trainable;
  sgdstab::Parametrization param;
};

}  // namespace

TEST(Cnn, TorchMlpMatchesTheEigenMlp) {
  const torch::Device cpu = sgdstab::cnn::torch_device(sgdstab::cnn::Device::cpu);
  const std::vector<Case> cases = {
      {{3, 2}, Activation::identity, false, {}, sgdstab::Parametrization::standard},
      {{3, 6, 2}, Activation::relu, true, {}, sgdstab::Parametrization::standard},
      {{3, 6, 2}, Activation::tanh, true, {false, true}, sgdstab::Parametrization::ntk},
      {{4, 5, 4, 3}, Activation::erf, false, {true, false, true}, sgdstab::Parametrization::mean_field},
      {{4, 5, 4, 1}, Activation::softplus, true, {}, sgdstab::Parametrization::standard},
  };
  for (const Case& c : cases) {
    sgdstab::MlpSpec spec;
    spec.widths = c.widths;
    if (c.widths.size() > 2) spec.activations = {c.act};
    spec.bias = c.bias;
    spec.trainable = c.trainable;
    spec.parametrization = c.param;
    sgdstab::Mlp net(spec, 3);
    if (c.bias)
      for (sgdstab::Index l = 1; l <= spec.layers(); ++l)
        net.set_bias(l, 0.2 * ref::gaussian(net.bias(l).size(), 1, 10 + static_cast<std::uint64_t>(l)).col(0));
    const MatrixXd x = ref::gaussian(5, c.widths.front(), 4);
    const sgdstab::cnn::TorchMlp tnet(net, cpu);
    SCOPED_TRACE(sgdstab::to_string(c.act));
    EXPECT_EQ(tnet.num_parameters(), net.num_parameters());
    EXPECT_LT(rel_err(tnet.forward(x), net.forward(x)), 1e-12);
    EXPECT_LT(rel_err(tnet.jacobian(x, 2), net.jacobian(x)), 1e-10);
    EXPECT_LT(rel_err(tnet.gram(x), net.gram(x)), 1e-10);
    const MatrixXd jt = tnet.jacobian(x, 3);
    EXPECT_LT(rel_err(tnet.gram(x), jt * jt.transpose()), 1e-12);  // the layer-structure Gram is J J^T
  }
}

TEST(Cnn, ThresholdFromTheTorchGramEqualsTheCoreSolver) {
  sgdstab::MlpSpec spec;
  spec.widths = {3, 8, 2};
  spec.activations = {Activation::tanh};
  sgdstab::Mlp net(spec, 7);
  const MatrixXd x = ref::gaussian(6, 3, 5);
  const sgdstab::cnn::TorchMlp tnet(net, sgdstab::cnn::torch_device(sgdstab::cnn::Device::automatic));
  const auto from_torch = sgdstab::Geometry::from_gram(tnet.gram(x), 2);
  const auto from_eigen = sgdstab::Geometry::from_jacobian(net.jacobian(x), 2);
  EXPECT_REL_NEAR(sgdstab::stability_threshold(from_torch, 2).eta_star,
                  sgdstab::stability_threshold(from_eigen, 2).eta_star, 1e-9);
}

TEST(Cnn, DevicesAreExplicit) {
  EXPECT_EQ(sgdstab::parse<sgdstab::Device>("auto"), sgdstab::cnn::Device::automatic);
  EXPECT_THROW(sgdstab::parse<sgdstab::Device>("gpu"), sgdstab::invalid_argument);
  EXPECT_TRUE(sgdstab::cnn::torch_device(sgdstab::cnn::Device::cpu).is_cpu());
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(sgdstab::cnn::torch_device(sgdstab::cnn::Device::cuda), sgdstab::invalid_argument);
    EXPECT_TRUE(sgdstab::cnn::torch_device(sgdstab::cnn::Device::automatic).is_cpu());
    GTEST_SKIP() << "no CUDA device visible to LibTorch (CPU-only build or no GPU): GPU checks skipped";
  }
  EXPECT_TRUE(sgdstab::cnn::torch_device(sgdstab::cnn::Device::automatic).is_cuda());
}

TEST(Cnn, RejectsBadInput) {
  sgdstab::MlpSpec spec;
  spec.widths = {3, 2};
  sgdstab::Mlp net(spec, 1);
  const sgdstab::cnn::TorchMlp tnet(net, torch::Device(torch::kCPU));
  EXPECT_THROW(tnet.forward(MatrixXd(ref::gaussian(2, 4, 1))), sgdstab::invalid_argument);
  EXPECT_THROW(tnet.jacobian(ref::gaussian(2, 3, 1), 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::cnn::to_eigen(torch::zeros({2, 2, 2})), sgdstab::invalid_argument);
}

// A tiny CNN (1 x 6 x 6 images, one conv block of 2 channels, classifier 4 -> 2):
// its Jacobian against central differences of its own forward pass, the Gram
// against J J^T, and eta* from the Gram against the core solver on J.
TEST(Cnn, VggJacobianMatchesFiniteDifferencesAndFeedsTheSolver) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 6, {2}, {4}, 2);
  sgdstab::cnn::Cnn net(spec, 5, torch::Device(torch::kCPU));
  // Nonzero biases so no ReLU sits exactly at a kink; random images.
  Eigen::VectorXd theta = net.parameters();
  theta += 0.05 * ref::gaussian(theta.size(), 1, 2).col(0);
  net.set_parameters(theta);
  const MatrixXd x = ref::gaussian(3, 36, 6);
  const MatrixXd j = net.jacobian(x);
  ASSERT_EQ(j.rows(), 6);
  ASSERT_EQ(j.cols(), net.num_parameters());
  EXPECT_LT(rel_err(j, fd_jacobian(net, x)), 1e-6);
  const MatrixXd k = net.gram(x);
  EXPECT_LT(rel_err(k, j * j.transpose()), 1e-13);
  const auto g = sgdstab::Geometry::from_gram(k, 2);
  EXPECT_REL_NEAR(sgdstab::stability_threshold(g, 2).eta_star,
                  sgdstab::stability_threshold(sgdstab::Geometry::from_jacobian(j, 2), 2).eta_star, 1e-9);
  spec.channels = {2, 2, 2};  // three poolings of a 6 x 6 image: invalid
  EXPECT_THROW(sgdstab::cnn::Cnn(spec, 1, torch::Device(torch::kCPU)), sgdstab::invalid_argument);
}

TEST(Cnn, TrainingReachesInterpolationOnATinyProblem) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 6, {4}, {32}, 2);
  sgdstab::cnn::Cnn net(spec, 3, torch::Device(torch::kCPU));
  const MatrixXd x = ref::gaussian(6, 36, 8);
  MatrixXd y = MatrixXd::Zero(6, 2);
  for (int i = 0; i < 6; ++i) y(i, i % 2) = 1.0;  // one-hot targets
  sgdstab::cnn::CnnTrainOptions o;
  o.batch = 2;
  o.schedule = sgdstab::Schedule::reshuffle;
  o.max_steps = 20000;
  o.residual_tolerance = 1e-6;
  // A safe rate: half the GD limit of the Gauss-Newton matrix at initialization.
  const auto g0 = sgdstab::Geometry::from_gram(net.gram(x), 2);
  o.lr = 1.0 / g0.lambda_max();
  const auto res = sgdstab::cnn::train_cnn(net, x, y, o);
  ASSERT_TRUE(res.converged()) << res.report.message << " max residual " << res.max_residual;
  // Independently recomputed from the forward pass.
  EXPECT_LE((net.forward(x) - y).cwiseAbs().maxCoeff(), 1e-6);
  o.lr = 1e3;
  sgdstab::cnn::Cnn other(spec, 3, torch::Device(torch::kCPU));
  const auto bad = sgdstab::cnn::train_cnn(other, x, y, o);
  EXPECT_FALSE(bad.converged());
  EXPECT_EQ(bad.status(), sgdstab::Status::diverged) << bad.report.message;
  EXPECT_EQ(bad.report.message.rfind("diverged", 0), 0u) << bad.report.message;
  o.batch = 7;
  EXPECT_THROW(sgdstab::cnn::train_cnn(other, x, y, o), sgdstab::invalid_argument);
}

TEST(Cnn, TrainingWithMomentumIsPyTorchsUpdate) {
  // train_cnn with momentum (full batch: deterministic) against the update
  // written out here from Cnn::gradient: v <- beta v + g, theta <- theta - lr v
  // (Nesterov: - lr (g + beta v)).
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 6, {4}, {32}, 2);
  const MatrixXd x = ref::gaussian(6, 36, 8);
  MatrixXd y = MatrixXd::Zero(6, 2);
  for (int i = 0; i < 6; ++i) y(i, i % 2) = 1.0;
  for (bool nesterov : {false, true}) {
    sgdstab::cnn::Cnn a(spec, 3, torch::Device(torch::kCPU)), b(spec, 3, torch::Device(torch::kCPU));
    const double lr = 0.5 / sgdstab::Geometry::from_gram(a.gram(x), 2).lambda_max();
    sgdstab::cnn::CnnTrainOptions o;
    o.batch = 6;
    o.max_steps = 5;
    o.check_every = 1;
    o.residual_tolerance = 1e-12;
    o.lr = lr;
    o.momentum = {0.7, nesterov};
    const auto res = sgdstab::cnn::train_cnn(a, x, y, o);
    EXPECT_EQ(res.method, nesterov ? "sgd+nesterov" : "sgd+momentum");
    Eigen::VectorXd v = Eigen::VectorXd::Zero(b.num_parameters());
    for (int t = 0; t < 5; ++t) {
      const Eigen::VectorXd g = b.gradient(x, y);
      v = 0.7 * v + g;
      b.set_parameters(b.parameters() - lr * (nesterov ? Eigen::VectorXd(g + 0.7 * v) : v));
    }
    EXPECT_LE((a.parameters() - b.parameters()).norm(), 1e-10 * b.parameters().norm()) << "nesterov " << nesterov;
  }
  sgdstab::cnn::Cnn c(spec, 3, torch::Device(torch::kCPU));
  sgdstab::cnn::CnnTrainOptions bad;
  bad.batch = 2;
  bad.lr = 0.1;
  bad.momentum = {1.0, false};
  EXPECT_THROW(sgdstab::cnn::train_cnn(c, x, y, bad), sgdstab::invalid_argument);
}

TEST(Cnn, HessianVectorProductsAndHutchinson) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 6, {3}, {16}, 2);
  sgdstab::cnn::Cnn net(spec, 4, torch::Device(torch::kCPU));
  const MatrixXd x = ref::gaussian(4, 36, 9);
  MatrixXd y = MatrixXd::Zero(4, 2);
  for (int i = 0; i < 4; ++i) y(i, i % 2) = 1.0;
  // HVP against central differences of the gradient, away from a minimum.
  const Eigen::VectorXd theta = net.parameters(), v = ref::gaussian(theta.size(), 1, 3).col(0);
  const double h = 1e-5;
  net.set_parameters(theta + h * v);
  const Eigen::VectorXd gp = net.gradient(x, y);
  net.set_parameters(theta - h * v);
  const Eigen::VectorXd gm = net.gradient(x, y);
  net.set_parameters(theta);
  EXPECT_LT(rel_err(net.hvp(x, y, v), (gp - gm) / (2 * h)), 1e-6);
  // At an interpolating point H = J^T J / n, so |H|_F = |K|_F / n exactly; Hutchinson's
  // interval must contain it.
  ASSERT_TRUE(train_to_interpolation(net, x, y, 1e-9));
  const double exact = std::pow(net.gram(x).norm() / 4.0, 2);
  const auto est = sgdstab::cnn::hutchinson_frobenius(net, x, y, 400, 11, 0.999);
  EXPECT_LE(est.ci_low, exact);
  EXPECT_GE(est.ci_high, exact);
  EXPECT_LT(est.ci_high - est.ci_low, exact);  // informative
}

namespace {

// Two conv blocks on 2 x 8 x 8 images, classifier 8 -> 5 -> 3, random biases.
sgdstab::cnn::Cnn small_cnn(std::uint64_t seed) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(2, 8, {3, 2}, {5}, 3);
  sgdstab::cnn::Cnn net(spec, seed, torch::Device(torch::kCPU));
  Eigen::VectorXd theta = net.parameters();
  theta += 0.05 * ref::gaussian(theta.size(), 1, seed + 1).col(0);
  net.set_parameters(theta);
  return net;
}

}  // namespace

// The batched per-sample Jacobian (unfold + batched GEMM, c reverse passes per
// chunk) against one reverse pass per (sample, output), for every chunk size.
TEST(Cnn, BatchedJacobianEqualsTheNaiveLoop) {
  const sgdstab::cnn::Cnn net = small_cnn(21);
  const MatrixXd x = ref::gaussian(7, 128, 22);
  const MatrixXd naive = net.jacobian_naive(x);
  ASSERT_EQ(naive.rows(), 21);
  for (sgdstab::Index chunk : {0, 1, 3, 7, 50}) {
    SCOPED_TRACE(chunk);
    EXPECT_LT(rel_err(net.jacobian(x, chunk), naive), 1e-13);
  }
  EXPECT_THROW(net.jacobian(x, -1), sgdstab::invalid_argument);
}

// The Gram from the gradient factors (explicit for convolutions, layer
// structure for linear layers), held and streamed panel by panel under a
// memory limit, against J J^T of the naive Jacobian; the number of chunk
// passes is the panel schedule's.
TEST(Cnn, GramStreamsTheJacobianWhenItDoesNotFit) {
  const sgdstab::cnn::Cnn net = small_cnn(23);
  const MatrixXd x = ref::gaussian(7, 128, 24);
  const MatrixXd j = net.jacobian_naive(x);
  const MatrixXd want = j * j.transpose();
  // Factors per sample, c = 3: conv gradients (3*2*9+3 + 2*3*9+2 = 113 per output), dz of
  // the linear layers (5 + 3 per output) and their inputs (8 + 5).
  const double per_sample = 8.0 * (3 * 113 + 3 * (5 + 3) + (8 + 5));
  const double chunk_bytes = 2.0 * per_sample;  // 2 samples
  sgdstab::cnn::GramInfo info;
  sgdstab::cnn::GramOptions o;
  o.chunk = 2;  // 4 chunks: 2, 2, 2, 1 samples
  EXPECT_LT(rel_err(net.gram(x, o, &info), want), 1e-13);
  EXPECT_EQ(info.bytes_per_sample, per_sample);
  EXPECT_FALSE(info.streamed);
  EXPECT_EQ(info.chunks, 4);
  EXPECT_EQ(info.passes, 4);
  o.memory_limit_bytes = 3.5 * chunk_bytes;  // hold 3: panels of 2 chunks {0,1} + 2, 3; {2,3}
  EXPECT_LT(rel_err(net.gram(x, o, &info), want), 1e-13);
  EXPECT_TRUE(info.streamed);
  EXPECT_EQ(info.passes, 2 + 2 + 2);
  o.memory_limit_bytes = 2.0 * chunk_bytes;  // hold 2: panels of one chunk, 4 + 3 + 2 + 1 passes
  EXPECT_LT(rel_err(net.gram(x, o, &info), want), 1e-13);
  EXPECT_EQ(info.passes, 10);
  o.memory_limit_bytes = 1.5 * chunk_bytes;
  EXPECT_THROW(net.gram(x, o), sgdstab::resource_error);
  o.memory_limit_bytes = -1.0;
  EXPECT_THROW(net.gram(x, o), sgdstab::invalid_argument);
}

// Lanczos lambda_max from HVPs against the dense Hessian assembled from p
// HVPs (away from a minimum: indefinite H) and against lambda_max(K)/n at an
// interpolating minimum (H = J^T J / n there).
TEST(Cnn, LanczosLambdaMaxMatchesTheDenseHessian) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 4, {2}, {6}, 2);
  sgdstab::cnn::Cnn net(spec, 9, torch::Device(torch::kCPU));
  net.set_parameters(net.parameters() + 0.1 * ref::gaussian(net.num_parameters(), 1, 11).col(0));
  const sgdstab::Index p = net.num_parameters();
  const MatrixXd x = ref::gaussian(5, 16, 12);
  const MatrixXd y = ref::gaussian(5, 2, 13);
  MatrixXd h(p, p);
  for (sgdstab::Index q = 0; q < p; ++q) h.col(q) = net.hvp(x, y, Eigen::VectorXd::Unit(p, q));
  const ref::SymEigenSolver es(0.5 * (h + h.transpose()));
  ASSERT_LT(es.eigenvalues()(0), -1e-3 * es.eigenvalues()(p - 1)) << es.eigenvalues().transpose();  // indefinite: a real test of "largest algebraic"
  const double exact = es.eigenvalues()(p - 1);
  sgdstab::cnn::LanczosOptions lo;
  lo.max_iterations = 40;  // < p: convergence by the residual bound, not by exhausting the space
  lo.tolerance = 1e-10;
  const auto est = sgdstab::cnn::lanczos_lambda_max(net, x, y, lo);
  ASSERT_TRUE(est.converged()) << est.report.message;
  EXPECT_REL_NEAR(est.lambda_max, exact, 1e-8);
  EXPECT_LE(est.lower, exact * (1 + 1e-12));
  EXPECT_GE(est.upper, exact * (1 - 1e-12));
  lo.max_iterations = 2;  // too few: reported, and still a lower bound
  const auto short_run = sgdstab::cnn::lanczos_lambda_max(net, x, y, lo);
  EXPECT_FALSE(short_run.converged());
  EXPECT_LE(short_run.lower, exact * (1 + 1e-12));
  lo.max_iterations = 0;
  EXPECT_THROW(sgdstab::cnn::lanczos_lambda_max(net, x, y, lo), sgdstab::invalid_argument);

  sgdstab::cnn::Cnn big = small_cnn(31);
  const MatrixXd xb = ref::gaussian(6, 128, 32);
  MatrixXd yb = MatrixXd::Zero(6, 3);
  for (int i = 0; i < 6; ++i) yb(i, i % 3) = 1.0;
  ASSERT_TRUE(train_to_interpolation(big, xb, yb, 1e-8));
  const double gn = sgdstab::Geometry::from_gram(big.gram(xb), 3).lambda_max();
  lo.max_iterations = 80;
  lo.tolerance = 1e-8;
  const auto at_min = sgdstab::cnn::lanczos_lambda_max(big, xb, yb, lo);
  ASSERT_TRUE(at_min.converged()) << at_min.report.message;
  EXPECT_REL_NEAR(at_min.lambda_max, gn, 1e-6);
}

// mu(theta) of the CNN against the core's parameter-space formula on the naive
// Jacobian; the training observer sees step 0 and every observe_every steps.
TEST(Cnn, AlignmentAlongTraining) {
  sgdstab::cnn::Cnn net = small_cnn(41);
  const MatrixXd x = ref::gaussian(6, 128, 42);
  MatrixXd y = MatrixXd::Zero(6, 3);
  for (int i = 0; i < 6; ++i) y(i, i % 3) = 1.0;
  const MatrixXd res = net.forward(x) - y;
  Eigen::VectorXd r(18);
  for (int i = 0; i < 6; ++i) r.segment(3 * i, 3) = res.row(i).transpose();
  const auto a = sgdstab::cnn::alignment_at(net, x, y, 5);
  EXPECT_EQ(a.step, 5);
  EXPECT_REL_NEAR(a.mu, sgdstab::alignment_from_jacobian(net.jacobian_naive(x), 3, r), 1e-10);
  EXPECT_REL_NEAR(a.loss, 0.5 * r.squaredNorm() / 6.0, 1e-12);
  sgdstab::cnn::CnnTrainOptions o;
  o.batch = 2;
  o.max_steps = 12;
  o.lr = 1e-3;
  o.observe_every = 5;
  std::vector<sgdstab::Index> seen;
  o.observer = [&](sgdstab::Index step, const sgdstab::cnn::Cnn& at) {
    seen.push_back(step);
    EXPECT_GT(sgdstab::cnn::alignment_at(at, x, y, step).mu, 0.0);
  };
  sgdstab::cnn::train_cnn(net, x, y, o);
  EXPECT_EQ(seen, (std::vector<sgdstab::Index>{0, 5, 10}));
}

// The same network on CUDA and on the CPU: outputs, batched Jacobian, Gram,
// HVP and a few SGD steps agree (float64 on both; kernels differ, so not bitwise).
TEST(Cnn, CudaMatchesCpu) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device visible to LibTorch (CPU-only build or no GPU): CUDA-vs-CPU check skipped";
  sgdstab::cnn::CnnSpec spec = tiny_spec(2, 8, {3, 4}, {6}, 3);
  sgdstab::cnn::Cnn cpu(spec, 51, torch::Device(torch::kCPU));
  sgdstab::cnn::Cnn gpu(spec, 51, sgdstab::cnn::torch_device(sgdstab::cnn::Device::cuda));
  ASSERT_TRUE(gpu.device().is_cuda());
  ASSERT_EQ(cpu.parameters(), gpu.parameters());
  const MatrixXd x = ref::gaussian(6, 128, 52);
  MatrixXd y = MatrixXd::Zero(6, 3);
  for (int i = 0; i < 6; ++i) y(i, i % 3) = 1.0;
  EXPECT_LT(rel_err(gpu.forward(x), cpu.forward(x)), 1e-12);
  EXPECT_LT(rel_err(gpu.jacobian(x, 4), cpu.jacobian_naive(x)), 1e-10);
  EXPECT_LT(rel_err(gpu.gram(x), cpu.gram(x)), 1e-10);
  const Eigen::VectorXd v = ref::gaussian(cpu.num_parameters(), 1, 53).col(0);
  EXPECT_LT(rel_err(gpu.hvp(x, y, v), cpu.hvp(x, y, v)), 1e-10);
  sgdstab::cnn::CnnTrainOptions o;
  o.lr = 0.01;
  o.batch = 2;
  o.max_steps = 10;
  o.seed = 3;
  sgdstab::cnn::train_cnn(cpu, x, y, o);
  sgdstab::cnn::train_cnn(gpu, x, y, o);
  EXPECT_LT(rel_err(gpu.parameters(), cpu.parameters()), 1e-9);
}

// Convolutions without a pool after them (VGG's layout): the batched Jacobian
// against the naive loop and central differences; the reduced VGG-11 preset
// has VGG-11's layout with the widths divided (parameter count by hand).
TEST(Cnn, PoolingLayoutAndTheReducedVgg11) {
  sgdstab::cnn::CnnSpec spec = tiny_spec(1, 8, {2, 3, 2}, {4}, 2);
  spec.pool = {true, false, true};  // 8 -> 4 -> 4 -> 2
  sgdstab::cnn::Cnn net(spec, 61, torch::Device(torch::kCPU));
  EXPECT_EQ(net.num_parameters(), (2 * 9 + 2) + (3 * 2 * 9 + 3) + (2 * 3 * 9 + 2) + (4 * 8 + 4) + (2 * 4 + 2));
  Eigen::VectorXd theta = net.parameters() + 0.05 * ref::gaussian(net.num_parameters(), 1, 62).col(0);
  net.set_parameters(theta);
  const MatrixXd x = ref::gaussian(3, 64, 63);
  const MatrixXd j = net.jacobian(x, 2);
  EXPECT_LT(rel_err(j, net.jacobian_naive(x)), 1e-13);
  EXPECT_LT(rel_err(j, fd_jacobian(net, x)), 1e-6);
  spec.pool = {true, false};
  EXPECT_THROW(spec.validate(), sgdstab::invalid_argument);

  const auto v = sgdstab::cnn::CnnSpec::vgg11(32, 3, 32, 32, {8}, 10);  // widths 2,4,8,8,16,16,16,16
  EXPECT_EQ(v.channels, (std::vector<int64_t>{2, 4, 8, 8, 16, 16, 16, 16}));
  const sgdstab::cnn::Cnn vnet(v, 1, torch::Device(torch::kCPU));
  const sgdstab::Index convs = (2 * 3 * 9 + 2) + (4 * 2 * 9 + 4) + (8 * 4 * 9 + 8) + (8 * 8 * 9 + 8) +
                               (16 * 8 * 9 + 16) + 3 * (16 * 16 * 9 + 16);
  EXPECT_EQ(vnet.num_parameters(), convs + (8 * 16 + 8) + (10 * 8 + 10));  // 32 / 2^5 = 1 x 1 x 16 features
  EXPECT_EQ(vnet.forward(ref::gaussian(2, 3 * 32 * 32, 64)).cols(), 10);
  EXPECT_THROW(sgdstab::cnn::CnnSpec::vgg11(8, 1, 28, 28, {8}, 10), sgdstab::invalid_argument);  // 5 pools of 28
}
