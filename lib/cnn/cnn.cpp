// VGG-style CNNs in LibTorch (theory/cnn.md, section 5), training (5.2), HVPs and Hutchinson (6).
#include <cmath>

#include "sgdstab/cnn.hpp"
#include "check.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::cnn {

using detail::require;
using Eigen::MatrixXd;
using Eigen::VectorXd;

void CnnSpec::validate() const {
  require(in_channels >= 1 && height >= 1 && width >= 1, "CnnSpec", "image shape must be positive");
  require(outputs >= 1, "CnnSpec::outputs", "must be >= 1, got " + std::to_string(outputs));
  require(pool.empty() || pool.size() == channels.size(), "CnnSpec::pool",
          "must be empty or have one entry per convolution (" + std::to_string(channels.size()) + "), got " +
              std::to_string(pool.size()));
  int64_t h = height, w = width, pools = 0;
  for (std::size_t l = 0; l < channels.size(); ++l) {
    require(channels[l] >= 1, "CnnSpec::channels", "every entry must be >= 1, got " + std::to_string(channels[l]));
    if (!pools_after(l)) continue;
    h /= 2;
    w /= 2;
    ++pools;
    require(h >= 1 && w >= 1, "CnnSpec::channels",
            "too many pooling layers (" + std::to_string(pools) + " so far) for " + std::to_string(height) + " x " +
                std::to_string(width) + " images");
  }
  for (int64_t m : hidden) require(m >= 1, "CnnSpec::hidden", "every entry must be >= 1, got " + std::to_string(m));
}

CnnSpec CnnSpec::vgg11(int64_t divisor, int64_t in_channels, int64_t height, int64_t width,
                       std::vector<int64_t> hidden, int64_t outputs) {
  require(divisor >= 1 && divisor <= 64, "CnnSpec::vgg11", "divisor must lie in 1..64, got " + std::to_string(divisor));
  CnnSpec s;
  s.in_channels = in_channels;
  s.height = height;
  s.width = width;
  s.channels.clear();
  for (int64_t c : {64, 128, 256, 256, 512, 512, 512, 512}) s.channels.push_back(std::max<int64_t>(1, c / divisor));
  s.pool = {true, true, false, true, false, true, false, true};
  s.hidden = std::move(hidden);
  s.outputs = outputs;
  s.validate();
  return s;
}

Cnn::Cnn(CnnSpec spec, std::uint64_t seed, const torch::Device& device) : spec_(std::move(spec)), device_(device) {
  spec_.validate();
  torch::manual_seed(seed);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  int64_t in = spec_.in_channels, h = spec_.height, w = spec_.width;
  for (std::size_t l = 0; l < spec_.channels.size(); ++l) {
    const int64_t ch = spec_.channels[l];
    conv_w_.push_back((torch::randn({ch, in, 3, 3}, opts) * std::sqrt(2.0 / (9.0 * static_cast<double>(in)))).to(device));
    conv_b_.push_back(torch::zeros({ch}, opts).to(device));
    in = ch;
    if (!spec_.pools_after(l)) continue;
    h /= 2;
    w /= 2;
  }
  int64_t features = in * h * w;
  std::vector<int64_t> widths = spec_.hidden;
  widths.push_back(spec_.outputs);
  for (int64_t m : widths) {
    fc_w_.push_back((torch::randn({m, features}, opts) * std::sqrt(2.0 / static_cast<double>(features))).to(device));
    fc_b_.push_back(torch::zeros({m}, opts).to(device));
    features = m;
  }
  for (std::size_t l = 0; l < conv_w_.size(); ++l) {
    params_.push_back(conv_w_[l]);
    params_.push_back(conv_b_[l]);
  }
  for (std::size_t l = 0; l < fc_w_.size(); ++l) {
    params_.push_back(fc_w_[l]);
    params_.push_back(fc_b_[l]);
  }
  for (auto& p : params_) {
    p.requires_grad_(true);
    num_params_ += p.numel();
  }
}

torch::Tensor Cnn::forward(const torch::Tensor& images) const {
  torch::Tensor a = images;
  for (std::size_t l = 0; l < conv_w_.size(); ++l) {
    a = torch::relu(torch::conv2d(a, conv_w_[l], conv_b_[l], 1, 1));
    if (spec_.pools_after(l)) a = torch::max_pool2d(a, 2);
  }
  a = a.flatten(1);
  for (std::size_t l = 0; l < fc_w_.size(); ++l) {
    a = torch::addmm(fc_b_[l], a, fc_w_[l].t());
    if (l + 1 < fc_w_.size()) a = torch::relu(a);
  }
  return a;
}

torch::Tensor Cnn::to_images(const Eigen::Ref<const MatrixXd>& images) const {
  const int64_t d = spec_.in_channels * spec_.height * spec_.width;
  require(images.cols() == d && images.rows() >= 1 && images.allFinite(), "Cnn",
          "images must be a finite n x (C H W) = n x " + std::to_string(d) + " matrix, got " +
              std::to_string(images.rows()) + " x " + std::to_string(images.cols()));
  return to_tensor(images, device_).reshape({images.rows(), spec_.in_channels, spec_.height, spec_.width});
}

MatrixXd Cnn::forward(const Eigen::Ref<const MatrixXd>& images) const {
  torch::NoGradGuard no_grad;
  return to_eigen(forward(to_images(images)));
}

VectorXd Cnn::parameters() const {
  VectorXd theta(num_params_);
  Index off = 0;
  for (const auto& p : params_) {
    const MatrixXd flat = to_eigen(p.detach().reshape({-1}));
    theta.segment(off, flat.rows()) = flat.col(0);
    off += flat.rows();
  }
  return theta;
}

void Cnn::set_parameters(const Eigen::Ref<const VectorXd>& theta) {
  require(theta.size() == num_params_ && theta.allFinite(), "Cnn::set_parameters",
          "theta must be finite with p = " + std::to_string(num_params_) + " entries, got " +
              std::to_string(theta.size()));
  torch::NoGradGuard no_grad;
  Index off = 0;
  for (auto& p : params_) {
    const Index k = p.numel();
    p.copy_(to_tensor(theta.segment(off, k), device_).reshape(p.sizes()));
    off += k;
  }
}

}  // namespace sgdstab::cnn

namespace sgdstab::cnn {

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

void CnnTrainOptions::validate(Index samples) const {
  require(std::isfinite(lr) && lr > 0.0, "CnnTrainOptions::lr", "must be finite and > 0, got " + detail::fmt(lr));
  check_batch(batch, samples, "CnnTrainOptions::batch");
  require(max_steps >= 0, "CnnTrainOptions::max_steps", "must be >= 0");
  require(residual_tolerance > 0.0, "CnnTrainOptions::residual_tolerance", "must be > 0");
  require(check_every >= 0, "CnnTrainOptions::check_every", "must be >= 0");
  require(observe_every >= 0, "CnnTrainOptions::observe_every", "must be >= 0");
  require(divergence_factor > 1.0, "CnnTrainOptions::divergence_factor",
          "must be > 1, got " + detail::fmt(divergence_factor));
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
  res.method = "sgd";
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
  res.message = "step limit reached";
  for (Index step = 1; step <= o.max_steps && max_res > res.tolerance; ++step) {
    double divisor = 1.0;
    const std::vector<Index>& b = sampler.next(divisor);
    net.sgd_step(x, y, b, divisor, o.lr);
    res.iterations = step;
    if (o.progress) o.progress(step, o.max_steps);
    if (o.observer && step % observe_every == 0) o.observer(step, net);
    if (step % check_every != 0 && step != o.max_steps) continue;
    measure(loss, max_res);
    res.loss_history.push_back(loss);
    if (!std::isfinite(loss) || loss > o.divergence_factor * initial) {
      res.message = "diverged: loss " + detail::fmt(loss) + " at step " + std::to_string(step);
      res.status = Status::diverged;
      break;
    }
  }
  measure(loss, max_res);
  res.loss = loss;
  res.max_residual = max_res;
  if (max_res <= res.tolerance) {
    res.status = Status::converged;
    res.message = "residual below tolerance";
  }
  return res;
}

}  // namespace sgdstab::cnn

#include <boost/math/distributions/students_t.hpp>

#include "sgdstab/random.hpp"

namespace sgdstab::cnn {

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

}  // namespace sgdstab::cnn
