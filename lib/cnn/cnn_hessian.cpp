// Hessian-vector products of a CNN's loss, Hutchinson's |H|_F and Lanczos
// lambda_max from them (theory/cnn.md, sections 6 and 7): the route when the
// Gram is too large to form.
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>

#include "foundations/check.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"

namespace sgdstab::cnn {

using detail::require;
using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

torch::Tensor loss_of(const Cnn& net, const torch::Tensor& x, const torch::Tensor& y) {
  return 0.5 * (net.forward(x) - y).pow(2).sum() / static_cast<double>(x.size(0));
}

VectorXd flatten(const std::vector<torch::Tensor>& parts) {
  std::vector<torch::Tensor> flat;
  for (const auto& g : parts) flat.push_back(g.reshape({-1}));
  return to_eigen(torch::cat(flat)).col(0);
}

}  // namespace

VectorXd Cnn::gradient(const Eigen::Ref<const MatrixXd>& images, const Eigen::Ref<const MatrixXd>& targets) const {
  require(targets.rows() == images.rows() && targets.cols() == spec_.outputs, "Cnn::gradient", "targets must be n x c");
  const torch::Tensor loss = loss_of(*this, to_images(images), to_tensor(targets, device_));
  return flatten(torch::autograd::grad({loss}, params_));
}

VectorXd Cnn::hvp(const Eigen::Ref<const MatrixXd>& images, const Eigen::Ref<const MatrixXd>& targets,
                  const Eigen::Ref<const VectorXd>& v) const {
  require(targets.rows() == images.rows() && targets.cols() == spec_.outputs, "Cnn::hvp", "targets must be n x c");
  require(v.size() == num_params_ && v.allFinite(), "Cnn::hvp",
          "v must be finite with p = " + std::to_string(num_params_) + " entries");
  const torch::Tensor loss = loss_of(*this, to_images(images), to_tensor(targets, device_));
  const auto grads = torch::autograd::grad({loss}, params_, {}, /*retain_graph=*/true, /*create_graph=*/true);
  torch::Tensor dot = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  Index off = 0;
  for (std::size_t q = 0; q < params_.size(); ++q) {
    const Index k = params_[q].numel();
    dot = dot + (grads[q].reshape({-1}) * to_tensor(v.segment(off, k), device_).reshape({-1})).sum();
    off += k;
  }
  return flatten(torch::autograd::grad({dot}, params_));
}

HutchinsonEstimate hutchinson_frobenius(const Cnn& net, const Eigen::Ref<const MatrixXd>& images,
                                        const Eigen::Ref<const MatrixXd>& targets, Index probes, std::uint64_t seed,
                                        double confidence) {
  require(probes >= 2, "hutchinson_frobenius", "probes must be >= 2, got " + std::to_string(probes));
  require(confidence > 0.0 && confidence < 1.0, "hutchinson_frobenius", "confidence must lie in (0, 1)");
  Rng rng(seed);
  std::vector<double> values;
  for (Index m = 0; m < probes; ++m) {
    VectorXd v(net.num_parameters());
    for (Index i = 0; i < v.size(); ++i) v(i) = rng.uniform() < 0.5 ? -1.0 : 1.0;
    values.push_back(net.hvp(images, targets, v).squaredNorm());
  }
  double mean = 0.0, ss = 0.0;
  for (double x : values) mean += x;
  mean /= static_cast<double>(probes);
  for (double x : values) ss += (x - mean) * (x - mean);
  const boost::math::students_t dist(static_cast<double>(probes - 1));
  const double half = boost::math::quantile(dist, 0.5 + 0.5 * confidence) *
                      std::sqrt(ss / static_cast<double>(probes - 1) / static_cast<double>(probes));
  return {mean, mean - half, mean + half, confidence, probes};
}

// theory/cnn.md, section 7: Lanczos with full reorthogonalization.
LanczosEstimate lanczos_lambda_max(const Cnn& net, const Eigen::Ref<const MatrixXd>& images,
                                   const Eigen::Ref<const MatrixXd>& targets, const LanczosOptions& o) {
  require(o.max_iterations >= 1, "lanczos_lambda_max", "max_iterations must be >= 1");
  require(o.tolerance > 0.0 && std::isfinite(o.tolerance), "lanczos_lambda_max", "tolerance must be finite and > 0");
  const Index p = net.num_parameters();
  const Index m = std::min(o.max_iterations, p);
  check_memory(8.0 * static_cast<double>(p) * static_cast<double>(m + 1), "the Lanczos basis (" + std::to_string(p) +
                                                                            " x " + std::to_string(m + 1) + ")");
  MatrixXd q(p, m + 1);
  Rng rng(o.seed);
  for (Index i = 0; i < p; ++i) q(i, 0) = rng.normal();
  q.col(0).normalize();
  std::vector<double> alpha, beta;
  LanczosEstimate est;
  est.report.message = "iteration limit reached";
  for (Index j = 0; j < m; ++j) {
    VectorXd w = net.hvp(images, targets, q.col(j));
    est.report.iterations = est.report.matvecs = j + 1;
    alpha.push_back(q.col(j).dot(w));
    for (int pass = 0; pass < 2; ++pass) w -= q.leftCols(j + 1) * (q.leftCols(j + 1).transpose() * w);
    beta.push_back(w.norm());
    const Index t = j + 1;
    MatrixXd tri = MatrixXd::Zero(t, t);
    for (Index i = 0; i < t; ++i) {
      tri(i, i) = alpha[static_cast<std::size_t>(i)];
      if (i + 1 < t) tri(i, i + 1) = tri(i + 1, i) = beta[static_cast<std::size_t>(i)];
    }
    const Eigen::SelfAdjointEigenSolver<MatrixXd> es(tri);
    est.lambda_max = es.eigenvalues()(t - 1);
    est.residual = beta.back() * std::abs(es.eigenvectors()(t - 1, t - 1));
    const double scale = std::max(std::abs(est.lambda_max), std::numeric_limits<double>::min());
    if (!std::isfinite(est.lambda_max)) {
      est.report.message = "non-finite Hessian-vector product";
      est.report.status = Status::numerical_failure;
      break;
    }
    if (est.residual <= o.tolerance * scale) {
      est.report.status = Status::converged;
      est.report.message = "residual bound below tolerance";
      break;
    }
    if (beta.back() <= 1e-14 * scale || j + 1 == p) {  // invariant subspace: the Ritz values are exact
      est.report.status = Status::converged;
      est.report.message = "invariant subspace found";
      break;
    }
    q.col(j + 1) = w / beta.back();
  }
  est.lower = est.lambda_max;
  est.upper = est.lambda_max + est.residual;
  return est;
}

}  // namespace sgdstab::cnn
