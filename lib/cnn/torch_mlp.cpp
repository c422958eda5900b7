// The library's MLP in LibTorch (theory/cnn.md).
#include <cmath>

#include "foundations/check.hpp"
#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::cnn {

using detail::require;

using Eigen::MatrixXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

torch::Tensor activate(Activation a, const torch::Tensor& z) {
  switch (a) {
    case Activation::identity: return z;
    case Activation::relu: return torch::relu(z);
    case Activation::tanh: return torch::tanh(z);
    case Activation::erf: return torch::erf(z);
    case Activation::softplus: return torch::nn::functional::softplus(z);
  }
  return z;
}

}  // namespace

TorchMlp::TorchMlp(const Mlp& model, const torch::Device& device) : spec_(model.spec()), device_(device) {
  for (Index l = 1; l <= spec_.layers(); ++l) {
    s_.push_back(model.multiplier(l));
    w_.push_back(to_tensor(model.weight(l), device).requires_grad_(true));
    const Eigen::VectorXd& b = model.bias(l);
    b_.push_back(b.size() > 0 ? to_tensor(b.transpose(), device).reshape({b.size()}).requires_grad_(true)
                              : torch::Tensor());
    if (spec_.is_trainable(l)) num_params_ += model.weight(l).size() + b.size();
  }
}

torch::Tensor TorchMlp::forward(const torch::Tensor& x) const {
  torch::Tensor h = x;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    const auto li = static_cast<std::size_t>(l - 1);
    torch::Tensor z = s_[li] * h.matmul(w_[li].t());
    if (b_[li].defined()) z = z + b_[li];
    h = l < spec_.layers() ? activate(spec_.activation(l), z) : z;
  }
  return h;
}

MatrixXd TorchMlp::forward(const Eigen::Ref<const MatrixXd>& x) const {
  require(x.cols() == spec_.inputs() && x.rows() >= 1 && x.allFinite(), "TorchMlp::forward",
          "X must be finite with d = " + std::to_string(spec_.inputs()) + " columns");
  torch::NoGradGuard no_grad;
  return to_eigen(forward(to_tensor(x, device_)));
}

// Per-sample gradients of f_k: one reverse pass to the pre-activations z_l
// (row i of dz_l depends on sample i only), then the outer products
// s_l dz_l[i] (x) h_{l-1}[i] (theory/cnn.md, eq. 1).
TorchMlp::Backward TorchMlp::pre_activation_grads(const torch::Tensor& x, Index k) const {
  std::vector<torch::Tensor> z;
  Backward out;
  torch::Tensor a = x;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    const auto li = static_cast<std::size_t>(l - 1);
    out.h.push_back(a.detach());
    torch::Tensor zl = s_[li] * a.matmul(w_[li].t());
    if (b_[li].defined()) zl = zl + b_[li];
    z.push_back(zl);
    a = l < spec_.layers() ? activate(spec_.activation(l), zl) : zl;
  }
  out.dz = torch::autograd::grad({a.select(1, k).sum()}, z, {}, /*retain_graph=*/false);
  return out;
}

std::vector<torch::Tensor> TorchMlp::per_sample_gradients(const torch::Tensor& x, Index k) const {
  const Backward bw = pre_activation_grads(x, k);
  std::vector<torch::Tensor> blocks;
  const int64_t n = x.size(0);
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const auto li = static_cast<std::size_t>(l - 1);
    blocks.push_back((s_[li] * bw.dz[li].unsqueeze(2) * bw.h[li].unsqueeze(1)).reshape({n, -1}));
    if (b_[li].defined()) blocks.push_back(bw.dz[li]);
  }
  return blocks;
}

MatrixXd TorchMlp::jacobian(const Eigen::Ref<const MatrixXd>& x, Index chunk) const {
  require(x.cols() == spec_.inputs() && x.rows() >= 1 && x.allFinite(), "TorchMlp::jacobian",
          "X must be finite with d = " + std::to_string(spec_.inputs()) + " columns");
  require(chunk >= 1, "TorchMlp::jacobian", "chunk must be >= 1");
  const Index n = x.rows(), c = spec_.outputs();
  check_memory(8.0 * 2.0 * static_cast<double>(n * c) * static_cast<double>(num_params_),
               "the Jacobian (" + std::to_string(n * c) + " x " + std::to_string(num_params_) + ")");
  // Assemble J in LibTorch (rows i*c + k), then one blocked transpose into
  // Eigen's column-major layout: row-by-row writes into a column-major
  // matrix are cache-hostile for large p.
  std::vector<torch::Tensor> chunks;
  for (Index start = 0; start < n; start += chunk) {
    const Index rows = std::min(chunk, n - start);
    const torch::Tensor xb = to_tensor(x.middleRows(start, rows), device_);
    std::vector<torch::Tensor> per_output;
    for (Index k = 0; k < c; ++k) per_output.push_back(torch::cat(per_sample_gradients(xb, k), 1).unsqueeze(1));
    chunks.push_back(torch::cat(per_output, 1).reshape({rows * c, num_params_}));  // rows i*c + k
  }
  const torch::Tensor jt = torch::cat(chunks, 0).t().contiguous().to(torch::kCPU);  // p x (n c), row-major
  MatrixXd jac = Eigen::Map<const MatrixXd>(jt.data_ptr<double>(), n * c, num_params_);
  return jac;
}

// The Gram from the layer structure (theory/cnn.md, eq. 3): per trainable layer
// K += (D_l D_l^T) o (s_l^2 H_{l-1} H_{l-1}^T + [bias]), D_l the pre-activation
// gradients of every output stacked with rows i*c + k; J is never formed.
MatrixXd TorchMlp::gram(const Eigen::Ref<const MatrixXd>& x) const {
  require(x.cols() == spec_.inputs() && x.rows() >= 1 && x.allFinite(), "TorchMlp::gram",
          "X must be finite with d = " + std::to_string(spec_.inputs()) + " columns");
  const Index n = x.rows(), c = spec_.outputs();
  check_memory(8.0 * 4.0 * static_cast<double>(n * c) * static_cast<double>(n * c), "the Gram");
  const torch::Tensor xt = to_tensor(x, device_);
  std::vector<Backward> per_k;
  for (Index k = 0; k < c; ++k) per_k.push_back(pre_activation_grads(xt, k));
  torch::Tensor gram = torch::zeros({n * c, n * c}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const auto li = static_cast<std::size_t>(l - 1);
    std::vector<torch::Tensor> rows;
    for (Index k = 0; k < c; ++k) rows.push_back(per_k[static_cast<std::size_t>(k)].dz[li].unsqueeze(1));
    const torch::Tensor d = torch::cat(rows, 1).reshape({n * c, -1});  // rows i*c + k
    const torch::Tensor& h = per_k[0].h[li];
    torch::Tensor hh = (s_[li] * s_[li]) * h.matmul(h.t());
    if (b_[li].defined()) hh = hh + 1.0;
    hh = hh.repeat_interleave(c, 0).repeat_interleave(c, 1);
    gram += d.matmul(d.t()) * hh;
  }
  return to_eigen(gram);
}

}  // namespace sgdstab::cnn
