#pragma once
/// \file cnn.hpp
/// \brief Optional LibTorch module (target sgdstab::cnn, built only when
/// LibTorch is found): devices, Eigen <-> tensor conversion, and the library's
/// MLP rebuilt in LibTorch with per-sample Jacobians and the NTK Gram, for
/// cross-checking the analytic Eigen implementation (theory/cnn.md).
///
/// Also: VGG-style CNNs (Cnn, the reduced VGG-11 preset) with batched
/// per-sample Jacobians and a Gram from gradient factors (J never formed;
/// streamed in chunks when the factors would not fit), exact Hessian-vector
/// products, Hutchinson |H|_F^2 and Lanczos lambda_max with intervals, the
/// alignment mu along training, and SGD training with the library's schedules.
/// Link sgdstab::cnn (find_package(sgdstab COMPONENTS cnn)).
///
/// Convention: everything in double precision (kFloat64), rows are samples,
/// Jacobian rows i*c + k as in Geometry; the loss is the library's
/// 1/2 |f - y|^2 mean over samples (torch::nn::MSELoss with reduction mean
/// equals (2/c) times it).
///
/// \code
/// sgdstab::Mlp net(spec, 1);                                   // Eigen model
/// auto dev = sgdstab::cnn::torch_device(sgdstab::cnn::Device::automatic);
/// sgdstab::cnn::TorchMlp tnet(net, dev);                       // same weights in LibTorch
/// Eigen::MatrixXd K = tnet.gram(X);                            // equals net.gram(X)
///
/// sgdstab::cnn::Cnn cnn(sgdstab::cnn::CnnSpec::vgg11(8, 3, 32, 32, {64}, 10), 0, dev);
/// sgdstab::cnn::CnnTrainOptions o;
/// o.lr = 0.01;
/// o.batch = 8;
/// sgdstab::cnn::train_cnn(cnn, images, targets, o);             // SGD to interpolation
/// auto g = sgdstab::Geometry::from_gram(cnn.gram(images), 10);  // -> stability_threshold(g, 8)
/// \endcode
#include <torch/torch.h>

#include <Eigen/Core>
#include <string>
#include <vector>

#include "sgdstab/bounds.hpp"
#include "sgdstab/cnn_options.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/mlp.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::cnn {

/// Where tensors live: cpu, cuda, or automatic (cuda when LibTorch reports a
/// device); the enumeration and its spellings are in types.hpp.
using sgdstab::Device;
/// \throws sgdstab::invalid_argument when cuda is requested but unavailable.
torch::Device torch_device(Device d);

/// n x m Eigen matrix -> n x m float64 tensor on `device` (row-major copy).
torch::Tensor to_tensor(const Eigen::Ref<const Eigen::MatrixXd>& m, const torch::Device& device);
/// 2-D (or 1-D, as a column) tensor -> Eigen matrix (copied to the CPU, float64).
Eigen::MatrixXd to_eigen(const torch::Tensor& t);

/// The Mlp of mlp.hpp in LibTorch: same layers, activations, multipliers and
/// weights (copied at construction), trainable flags as requires_grad.
class TorchMlp {
 public:
  TorchMlp(const Mlp& model, const torch::Device& device);
  /// Outputs, n x c.
  torch::Tensor forward(const torch::Tensor& x) const;
  Eigen::MatrixXd forward(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  /// Per-sample Jacobian ((n c) x p, rows i*c + k, trainable parameters in the
  /// order of Mlp::parameters()) by reverse mode, `chunk` samples at a time.
  Eigen::MatrixXd jacobian(const Eigen::Ref<const Eigen::MatrixXd>& x, Index chunk = 64) const;
  /// NTK Gram J J^T from the layer structure (theory/cnn.md, eq. 3): J is
  /// never formed; O((n c)^2 m_l) per layer instead of O((n c)^2 p).
  Eigen::MatrixXd gram(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  Index num_parameters() const { return num_params_; }
  const torch::Device& device() const { return device_; }

 private:
  // Per-sample gradients of output k for the samples of x: for each trainable
  // tensor, a (rows of x) x (numel) matrix.
  std::vector<torch::Tensor> per_sample_gradients(const torch::Tensor& x, Index k) const;
  // Gradients of sum_i f_k(x_i) with respect to every pre-activation z_l
  // (row i = sample i) and the layer inputs h_{l-1}.
  struct Backward {
    std::vector<torch::Tensor> dz, h;
  };
  Backward pre_activation_grads(const torch::Tensor& x, Index k) const;
  MlpSpec spec_;
  std::vector<double> s_;
  std::vector<torch::Tensor> w_, b_;  // W_l (m_l x m_{l-1}) and b_l, float64
  std::vector<torch::Tensor> trainable_;  // in the order of Mlp::parameters()
  torch::Device device_;
  Index num_params_ = 0;
};

/// A VGG-style CNN: 3x3 convolutions (padding 1, bias) + ReLU with the given
/// channel counts, each followed by a 2x2 max-pool when `pool` says so (all
/// of them when `pool` is empty), then a ReLU classifier with the given
/// hidden widths and `outputs` linear outputs. No batch-norm: it couples the
/// samples of a batch and breaks the per-sample loss structure the theory
/// needs (theory/cnn.md, section 5).
struct CnnSpec {
  int64_t in_channels = 3, height = 32, width = 32;
  std::vector<int64_t> channels = {8, 16, 32};  ///< one convolution each
  std::vector<bool> pool;                       ///< pool after convolution l; empty = after every one
  std::vector<int64_t> hidden = {64};           ///< classifier hidden widths
  int64_t outputs = 10;
  bool pools_after(std::size_t l) const { return pool.empty() || pool[l]; }
  void validate() const;
  /// VGG-11's feature layers (64, M, 128, M, 256, 256, M, 512, 512, M, 512,
  /// 512, M) with every width divided by `divisor` (the "reduced VGG-11" of
  /// the experiments: divisor 8 gives 8, M, 16, M, 32, 32, M, 64, 64, M, 64, 64, M).
  static CnnSpec vgg11(int64_t divisor, int64_t in_channels, int64_t height, int64_t width,
                       std::vector<int64_t> hidden, int64_t outputs);
};

// GramOptions: cnn_options.hpp.
/// How a Gram was assembled (for reports and tests).
struct GramInfo {
  Index chunk = 0;        ///< samples per pass
  Index chunks = 0;       ///< ceil(n / chunk)
  Index passes = 0;       ///< chunk Jacobians computed (chunks when J was held, more when streamed)
  bool streamed = false;  ///< true when the factors did not fit and were recomputed panel by panel
  double bytes_per_sample = 0.0;  ///< of the factors held per sample
};

/// A CNN with its parameters (float64), initialized from a seed with
/// LibTorch's generator (He-normal weights, zero biases; reproducible for a
/// given LibTorch build).
class Cnn {
 public:
  Cnn(CnnSpec spec, std::uint64_t seed, const torch::Device& device);
  const CnnSpec& spec() const { return spec_; }
  Index num_parameters() const { return num_params_; }
  /// Images n x (C H W) (planar channels, rows = samples, as the data layer
  /// produces them) -> outputs n x c.
  Eigen::MatrixXd forward(const Eigen::Ref<const Eigen::MatrixXd>& images) const;
  torch::Tensor forward(const torch::Tensor& images) const;  ///< n x C x H x W -> n x c
  Eigen::VectorXd parameters() const;
  void set_parameters(const Eigen::Ref<const Eigen::VectorXd>& theta);
  /// Per-sample Jacobian ((n c) x p, rows i*c + k), batched: per chunk of
  /// samples, c reverse passes to the pre-activations, then per-sample weight
  /// gradients from them (unfold + batched GEMM for convolutions, outer
  /// products for linear layers; theory/cnn.md, section 5.1). `chunk` = 0 picks it.
  Eigen::MatrixXd jacobian(const Eigen::Ref<const Eigen::MatrixXd>& images, Index chunk = 0) const;
  /// The same by one reverse pass per (sample, output) pair: the reference
  /// (and the baseline of the benchmark).
  Eigen::MatrixXd jacobian_naive(const Eigen::Ref<const Eigen::MatrixXd>& images) const;
  /// J J^T ((n c) x (n c)) on the model's device, J never formed: explicit
  /// per-sample gradients for the convolutions, the layer structure
  /// (dZ dZ^T) o (A A^T + 1) for the linear layers (theory/cnn.md, section 5.1, eq. 5).
  /// When these factors do not fit in `options.memory_limit_bytes`, panels of
  /// chunks are kept and the other chunks recomputed against them.
  /// \throws sgdstab::resource_error when not even the Gram and two chunks fit.
  Eigen::MatrixXd gram(const Eigen::Ref<const Eigen::MatrixXd>& images, const GramOptions& options = {},
                       GramInfo* info = nullptr) const;
  /// grad L and the exact Hessian-vector product of L = (1/n) sum 1/2 |f - y|^2
  /// (double backward; includes the residual term away from a minimum).
  Eigen::VectorXd gradient(const Eigen::Ref<const Eigen::MatrixXd>& images,
                           const Eigen::Ref<const Eigen::MatrixXd>& targets) const;
  Eigen::VectorXd hvp(const Eigen::Ref<const Eigen::MatrixXd>& images, const Eigen::Ref<const Eigen::MatrixXd>& targets,
                      const Eigen::Ref<const Eigen::VectorXd>& v) const;
  /// One SGD step on the rows `batch` of (images, targets), gradient divided by `divisor`.
  void sgd_step(const torch::Tensor& images, const torch::Tensor& targets, const std::vector<Index>& batch,
                double divisor, double lr);
  /// The same with momentum (PyTorch's SGD, dampening 0; theory/momentum.md):
  /// v <- beta v + g, theta <- theta - lr v (Nesterov: - lr (g + beta v)).
  /// `velocity` holds one buffer per trainable tensor (empty: zeros). An empty
  /// batch has g = 0 and still moves theta by the momentum.
  void sgd_step(const torch::Tensor& images, const torch::Tensor& targets, const std::vector<Index>& batch,
                double divisor, double lr, const Momentum& momentum, std::vector<torch::Tensor>& velocity);
  torch::Tensor images_tensor(const Eigen::Ref<const Eigen::MatrixXd>& images) const { return to_images(images); }
  const torch::Device& device() const { return device_; }

 private:
  torch::Tensor to_images(const Eigen::Ref<const Eigen::MatrixXd>& images) const;
  // Per-sample gradient factors of a chunk of m samples (theory/cnn.md, section 5.1).
  struct Factors {
    torch::Tensor conv;                // (m c) x p_conv: explicit per-sample gradients of the conv parameters
    std::vector<torch::Tensor> dz, a;  // linear layers: d f_k / d z_l ((m c) x out_l) and inputs (m x in_l)
  };
  Factors factors(const torch::Tensor& x) const;
  torch::Tensor jacobian_chunk_t(const torch::Tensor& x) const;  // p x (m c) on the device
  torch::Tensor gram_block(const Factors& a, const Factors& b) const;  // J_a J_b^T
  double factor_bytes_per_sample() const;
  Index auto_chunk(double bytes_per_sample) const;
  CnnSpec spec_;
  torch::Device device_;
  std::vector<torch::Tensor> conv_w_, conv_b_, fc_w_, fc_b_;
  std::vector<torch::Tensor> params_;  // all of the above, in parameter order
  Index num_params_ = 0;
};

/// Hutchinson estimate of |H|_F^2 = E |H v|^2 (v Rademacher) from `probes`
/// Hessian-vector products, with a Student-t interval (theory/cnn.md, eq. 2).
struct HutchinsonEstimate {
  double frobenius_squared = 0.0, ci_low = 0.0, ci_high = 0.0;
  double confidence = 0.0;  ///< of [ci_low, ci_high]
  Index probes = 0;
};
HutchinsonEstimate hutchinson_frobenius(const Cnn& net, const Eigen::Ref<const Eigen::MatrixXd>& images,
                                        const Eigen::Ref<const Eigen::MatrixXd>& targets, Index probes,
                                        std::uint64_t seed, double confidence = 0.95);

/// Largest Hessian eigenvalue by Lanczos on exact Hessian-vector products
/// (full reorthogonalization; theory/cnn.md, section 7). The top Ritz value
/// is a lower bound of lambda_max for every start; lambda_max <= upper holds
/// once the Ritz value approximates the top eigenvalue (residual bound).
struct LanczosOptions {
  Index max_iterations = 60;
  double tolerance = 1e-8;  ///< stop when the residual bound <= tolerance * |theta|
  std::uint64_t seed = 0;
};
struct LanczosEstimate : Result {
  double lambda_max = 0.0, lower = 0.0, upper = 0.0;
  double residual = 0.0;  ///< |H s - theta s| of the Ritz vector (from the recurrence)
  // report: status converged when the residual bound <= tolerance * |theta|;
  // iterations and matvecs the Hessian-vector products; message; seconds.
};
LanczosEstimate lanczos_lambda_max(const Cnn& net, const Eigen::Ref<const Eigen::MatrixXd>& images,
                                   const Eigen::Ref<const Eigen::MatrixXd>& targets, const LanczosOptions& options = {});

/// The seed paper's alignment mu(theta), L and |G|_F at the CNN's current
/// parameters, from its per-sample gradients (one Gram; NaN mu at an exact
/// interpolant), as alignment_at does for the Eigen MLP (theory/cnn.md, section 8).
AlignmentSample alignment_at(const Cnn& net, const Eigen::Ref<const Eigen::MatrixXd>& images,
                             const Eigen::Ref<const Eigen::MatrixXd>& targets, Index step = 0,
                             const GramOptions& gram_options = {});

// CnnTrainOptions: cnn_options.hpp.


/// Mini-batch SGD on L = (1/n) sum_i 1/2 |f(x_i) - y_i|^2 (theta <- theta -
/// lr/D sum_batch grad l_i) until the residual tolerance or the step budget;
/// divergence (non-finite loss, or divergence_factor times the initial loss)
/// is reported as Status::diverged, never thrown
/// (theory/cnn.md, section 5.2).
MinimizeResult train_cnn(Cnn& net, const Eigen::Ref<const Eigen::MatrixXd>& images,
                         const Eigen::Ref<const Eigen::MatrixXd>& targets, const CnnTrainOptions& options);

}  // namespace sgdstab::cnn
