#pragma once
/// \file mlp.hpp
/// \brief Fully connected networks with analytic derivatives: outputs,
/// per-sample Jacobians, the NTK Gram without forming J, loss, gradient and
/// exact Hessian-vector products (theory/mlp.md).
///
/// One family covers the models of the stability theory:
///  - linear model:          widths {d, c}                       (one layer)
///  - random feature model:  widths {d, m, c}, trainable {false, true}
///                           (phi(x) = sigma(W1 x) fixed, f = W2 phi(x))
///  - deep linear network:   widths {d, m, ..., c}, all activations identity
///  - two-layer / deep nets: relu, tanh, erf or softplus hidden layers.
///
/// Layer l = 1..L computes (theory/mlp.md, eq. 1)
///   z_l = s_l W_l h_{l-1} + b_l,   h_l = sigma_l(z_l),   h_0 = x,   f(x) = z_L,
/// with W_l of shape m_l x m_{l-1}, bias b_l (when MlpSpec::bias), and a fixed
/// multiplier s_l set by the parametrization (standard: 1; ntk: sqrt(gain/m_{l-1});
/// mean_field: like ntk but 1/m_{L-1} on the output layer; gain 2 for he, 1 for lecun), times
/// MlpSpec::output_scale on the output layer. The output layer has no activation.
///
/// The parameter vector theta holds the *trainable* layers only, in layer
/// order, each as W_l row-major followed by b_l (theory/mlp.md, eq. 2). The
/// stacked Jacobian has rows i*c + k = d f_k(x_i) / d theta, the row order of
/// Geometry. Loss convention (the library's only one):
/// L(theta) = (1/n) sum_i 1/2 |f(x_i) - y_i|^2.
///
/// \code
/// sgdstab::MlpSpec spec;
/// spec.widths = {784, 1024, 4};
/// spec.activations = {sgdstab::Activation::relu};
/// spec.bias = true;
/// sgdstab::Mlp net(spec, /*seed=*/1);
/// Eigen::MatrixXd K = net.gram(X);                    // (4n) x (4n), never forms J
/// auto g = sgdstab::Geometry::from_gram(K, /*outputs=*/4);
/// \endcode
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "sgdstab/types.hpp"

namespace sgdstab {

// Activation, Parametrization and Init (with their spellings) are in types.hpp.

/// The architecture. validate() throws sgdstab::invalid_argument.
struct MlpSpec {
  /// d, m_1, ..., m_{L-1}, c: at least two entries, all >= 1.
  std::vector<Index> widths;
  /// One per hidden layer (widths.size() - 2 entries), or a single entry used
  /// for every hidden layer (ignored without hidden layers), or empty for a
  /// network without hidden layers.
  std::vector<Activation> activations;
  /// Layers have biases b_l (initialized to zero).
  bool bias = false;
  /// One flag per layer (widths.size() - 1 entries); empty = all trainable.
  /// At least one layer must be trainable.
  std::vector<bool> trainable;
  Parametrization parametrization = Parametrization::standard;
  Init init = Init::he;
  /// Extra multiplier on the output layer (on top of s_L).
  double output_scale = 1.0;

  void validate() const;
  Index layers() const { return static_cast<Index>(widths.size()) - 1; }
  Index inputs() const { return widths.front(); }
  Index outputs() const { return widths.back(); }
  Activation activation(Index hidden_layer) const;  ///< of layer l = 1..L-1
  bool is_trainable(Index layer) const;             ///< layer l = 1..L
  /// Only the output layer is trainable: f is linear in theta (linear model, RFM).
  bool linear_in_parameters() const;
  /// Number of weights and biases of all layers (trainable or not), as a double.
  double weight_count() const;
  /// Sum of the widths (units per sample in a forward pass), as a double.
  double unit_count() const;
};

/// A network with its current weights. Copyable value type.
class Mlp {
 public:
  /// Random initialization from `seed` (sgdstab::Rng; theory/mlp.md, section 3):
  /// weights Gaussian with the variance of the parametrization, biases zero.
  Mlp(MlpSpec spec, std::uint64_t seed);

  const MlpSpec& spec() const { return spec_; }
  Index inputs() const { return spec_.inputs(); }
  Index outputs() const { return spec_.outputs(); }
  /// p: the number of trainable parameters (the length of theta).
  Index num_parameters() const { return num_params_; }
  /// The multiplier s_l of layer l = 1..L.
  double multiplier(Index layer) const;

  Eigen::VectorXd parameters() const;
  /// \throws sgdstab::invalid_argument on a wrong length or non-finite entries.
  void set_parameters(const Eigen::Ref<const Eigen::VectorXd>& theta);
  /// Weights and biases of layer l = 1..L (trainable or not).
  const Eigen::MatrixXd& weight(Index layer) const;
  const Eigen::VectorXd& bias(Index layer) const;
  void set_weight(Index layer, const Eigen::MatrixXd& w);
  void set_bias(Index layer, const Eigen::VectorXd& b);

  /// Outputs, n x c (row i = f(x_i)). X is n x d.
  Eigen::MatrixXd forward(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  /// Input of the output layer, n x m_{L-1} (the feature map phi(x) of an RFM).
  Eigen::MatrixXd features(const Eigen::Ref<const Eigen::MatrixXd>& x) const;

  /// Stacked per-sample Jacobian, (n c) x p, rows i*c + k.
  /// \throws sgdstab::resource_error when it would not fit in memory.
  Eigen::MatrixXd jacobian(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  /// NTK Gram K = J J^T, (n c) x (n c), from the layer structure without
  /// forming J: c backward passes (O(c n p) flops) plus O((n c)^2 m_l + n^2 m_{l-1})
  /// per trainable layer, never O((n c)^2 p) (theory/mlp.md, eq. 6).
  Eigen::MatrixXd gram(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  /// J v, as an (n c) vector (forward mode).
  Eigen::VectorXd jvp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                      const Eigen::Ref<const Eigen::VectorXd>& v) const;
  /// J^T u for u of length n c (reverse mode).
  Eigen::VectorXd vjp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                      const Eigen::Ref<const Eigen::VectorXd>& u) const;

  /// L = (1/n) sum_i 1/2 |f(x_i) - y_i|^2. Y is n x c.
  double loss(const Eigen::Ref<const Eigen::MatrixXd>& x,
              const Eigen::Ref<const Eigen::MatrixXd>& y) const;
  /// Residuals F - Y, n x c.
  Eigen::MatrixXd residuals(const Eigen::Ref<const Eigen::MatrixXd>& x,
                            const Eigen::Ref<const Eigen::MatrixXd>& y) const;
  /// grad L, length p.
  Eigen::VectorXd gradient(const Eigen::Ref<const Eigen::MatrixXd>& x,
                           const Eigen::Ref<const Eigen::MatrixXd>& y) const;
  /// Gradient of the batch loss (1/B) sum_{i in batch} 1/2 |f(x_i) - y_i|^2,
  /// indices may repeat (sampling with replacement); `divisor` = B.
  Eigen::VectorXd batch_gradient(const Eigen::Ref<const Eigen::MatrixXd>& x,
                                 const Eigen::Ref<const Eigen::MatrixXd>& y,
                                 const std::vector<Index>& batch, double divisor) const;
  /// batch_gradient without the O(n d) validation of X and Y (the batch
  /// indices are still checked): for trainers that validated them once.
  Eigen::VectorXd batch_gradient_unchecked(const Eigen::Ref<const Eigen::MatrixXd>& x,
                                           const Eigen::Ref<const Eigen::MatrixXd>& y,
                                           const std::vector<Index>& batch, double divisor) const;
  /// Exact Hessian-vector product of L (Gauss-Newton part plus the residual
  /// term), by Pearlmutter's R-operator (theory/mlp.md, eqs. 7-8).
  Eigen::VectorXd hvp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                      const Eigen::Ref<const Eigen::MatrixXd>& y,
                      const Eigen::Ref<const Eigen::VectorXd>& v) const;
  /// Gauss-Newton product G v = (1/n) J^T J v (= H v at an interpolating minimum).
  Eigen::VectorXd gauss_newton_vp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                                  const Eigen::Ref<const Eigen::VectorXd>& v) const;

 private:
  struct Trace;
  struct LayerDirection;
  LayerDirection unpack(const Eigen::Ref<const Eigen::VectorXd>& v, const char* where) const;
  std::vector<Eigen::MatrixXd> forward_directional(const Trace& t, const LayerDirection& v) const;
  Trace run_forward(const Eigen::Ref<const Eigen::MatrixXd>& x) const;
  void check_inputs(const Eigen::Ref<const Eigen::MatrixXd>& x, const char* where) const;
  void check_targets(const Eigen::Ref<const Eigen::MatrixXd>& x,
                     const Eigen::Ref<const Eigen::MatrixXd>& y, const char* where) const;
  std::vector<Eigen::MatrixXd> backward(const Trace& t, Eigen::MatrixXd seed) const;
  Eigen::VectorXd gather_gradient(const Trace& t, const std::vector<Eigen::MatrixXd>& deltas) const;

  MlpSpec spec_;
  std::vector<Eigen::MatrixXd> w_;  // w_[l-1] = W_l
  std::vector<Eigen::VectorXd> b_;  // b_[l-1] = b_l (size 0 without biases)
  std::vector<double> s_;           // s_[l-1] = s_l
  Index num_params_ = 0;
};

/// Targets of a random teacher of the same family: Y = teacher(X), the
/// teacher initialized from `seed`. Returns n x c.
Eigen::MatrixXd teacher_targets(const MlpSpec& teacher, const Eigen::Ref<const Eigen::MatrixXd>& x,
                                std::uint64_t seed);

}  // namespace sgdstab
