// Mini-batch SGD on a CNN with the library's schedules (theory/cnn.md, section 5.2).
#include <cmath>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/schedule.hpp"

namespace sgdstab::cnn {

using detail::require;
using Eigen::MatrixXd;
using Eigen::VectorXd;

void Cnn::sgd_step(const torch::Tensor& images, const torch::Tensor& targets, const std::vector<Index>& batch,
                   double divisor, double lr) {
  if (batch.empty()) return;  // an empty Bernoulli batch: no update
  std::vector<int64_t> idx(batch.begin(), batch.end());
  const torch::Tensor sel = torch::tensor(idx, torch::kLong).to(device_);
  const torch::Tensor r = forward(images.index_select(0, sel)) - targets.index_select(0, sel);
  const torch::Tensor loss = 0.5 * r.pow(2).sum() / divisor;
  const auto grads = torch::autograd::grad({loss}, params_);
  torch::NoGradGuard no_grad;
  for (std::size_t q = 0; q < params_.size(); ++q) params_[q].sub_(lr * grads[q]);
}

void Cnn::sgd_step(const torch::Tensor& images, const torch::Tensor& targets, const std::vector<Index>& batch,
                   double divisor, double lr, const Momentum& momentum, std::vector<torch::Tensor>& velocity) {
  if (velocity.empty())
    for (const torch::Tensor& p : params_) velocity.push_back(torch::zeros_like(p));
  std::vector<torch::Tensor> grads;
  if (batch.empty()) {
    for (const torch::Tensor& p : params_) grads.push_back(torch::zeros_like(p));
  } else {
    std::vector<int64_t> idx(batch.begin(), batch.end());
    const torch::Tensor sel = torch::tensor(idx, torch::kLong).to(device_);
    const torch::Tensor r = forward(images.index_select(0, sel)) - targets.index_select(0, sel);
    const torch::Tensor loss = 0.5 * r.pow(2).sum() / divisor;
    grads = torch::autograd::grad({loss}, params_);
  }
  torch::NoGradGuard no_grad;
  const double b = momentum.beta;
  for (std::size_t q = 0; q < params_.size(); ++q) {
    velocity[q].mul_(b).add_(grads[q]);
    if (momentum.nesterov) params_[q].sub_(lr * (grads[q] + b * velocity[q]));
    else params_[q].sub_(lr * velocity[q]);
  }
}

MinimizeResult train_cnn(Cnn& net, const Eigen::Ref<const MatrixXd>& images, const Eigen::Ref<const MatrixXd>& targets,
                         const CnnTrainOptions& o) {
  const Index n = images.rows();
  o.validate(n);
  require(targets.rows() == n && targets.cols() == net.spec().outputs && targets.allFinite(), "train_cnn",
          "targets must be a finite n x c = " + std::to_string(n) + " x " + std::to_string(net.spec().outputs) +
              " matrix");
  const torch::Tensor x = net.images_tensor(images);
  const torch::Tensor y = to_tensor(targets, net.device());
  MinimizeResult res;
  res.method = o.momentum.beta > 0.0 ? (o.momentum.nesterov ? "sgd+nesterov" : "sgd+momentum") : "sgd";
  std::vector<torch::Tensor> velocity;
  res.tolerance = residual_tolerance_for(targets, o.residual_tolerance);
  BatchSampler sampler(o.schedule, n, o.batch, o.seed);
  const Index check_every = o.check_every > 0 ? o.check_every : (n + o.batch - 1) / o.batch;
  auto measure = [&](double& loss, double& max_res) {
    torch::NoGradGuard no_grad;
    const torch::Tensor r = net.forward(x) - y;
    loss = 0.5 * r.pow(2).sum().item<double>() / static_cast<double>(n);
    max_res = r.abs().max().item<double>();
    if (!std::isfinite(loss) || !std::isfinite(max_res)) max_res = loss = INFINITY;
  };
  double loss = 0.0, max_res = 0.0;
  measure(loss, max_res);
  const double initial = loss;
  res.loss_history.push_back(loss);
  const Index observe_every = o.observe_every > 0 ? o.observe_every : check_every;
  if (o.observer) o.observer(0, net);
  res.report.message = "step limit reached";
  for (Index step = 1; step <= o.max_steps && max_res > res.tolerance; ++step) {
    sgdstab::detail::throw_if_interrupted("cnn train");
    double divisor = 1.0;
    const std::vector<Index>& b = sampler.next(divisor);
    if (o.momentum.beta > 0.0) net.sgd_step(x, y, b, divisor, o.lr, o.momentum, velocity);
    else net.sgd_step(x, y, b, divisor, o.lr);
    res.report.iterations = step;
    if (o.progress) o.progress(step, o.max_steps);
    if (o.observer && step % observe_every == 0) o.observer(step, net);
    if (step % check_every != 0 && step != o.max_steps) continue;
    measure(loss, max_res);
    res.loss_history.push_back(loss);
    if (!std::isfinite(loss) || loss > o.divergence_factor * initial) {
      res.report.message = "diverged: loss " + detail::fmt(loss) + " at step " + std::to_string(step);
      res.report.status = Status::diverged;
      break;
    }
  }
  measure(loss, max_res);
  res.loss = loss;
  res.max_residual = max_res;
  if (max_res <= res.tolerance) {
    res.report.status = Status::converged;
    res.report.message = "residual below tolerance";
  }
  return res;
}

}  // namespace sgdstab::cnn
