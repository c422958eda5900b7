// Devices and tensor conversion of the LibTorch module (theory/cnn.md, section 4).
#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"

namespace sgdstab::cnn {

using Eigen::MatrixXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

torch::Device torch_device(Device d) {
  const bool has_cuda = torch::cuda::is_available();
  if (d == Device::cuda && !has_cuda)
    throw invalid_argument("device: cuda requested but LibTorch reports no CUDA device (a CPU-only LibTorch such as "
                           "Debian's libtorch-dev, or no GPU): use cpu or auto");
  if (d == Device::cpu || !has_cuda) return torch::Device(torch::kCPU);
  return torch::Device(torch::kCUDA);
}

torch::Tensor to_tensor(const Eigen::Ref<const MatrixXd>& m, const torch::Device& device) {
  const RowMatrix rm = m;
  return torch::from_blob(const_cast<double*>(rm.data()), {m.rows(), m.cols()}, torch::kFloat64).clone().to(device);
}

MatrixXd to_eigen(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (c.dim() == 1) c = c.unsqueeze(1);
  if (c.dim() != 2) throw invalid_argument("to_eigen: expected a 1-D or 2-D tensor, got " + std::to_string(c.dim()) + "-D");
  return Eigen::Map<const RowMatrix>(c.data_ptr<double>(), c.size(0), c.size(1));
}

}  // namespace sgdstab::cnn
