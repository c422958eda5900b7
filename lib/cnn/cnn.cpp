// VGG-style CNNs in LibTorch: the specification, the network, its parameters
// (theory/cnn.md, section 5).
#include <cmath>

#include "foundations/check.hpp"
#include "sgdstab/cnn.hpp"
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
