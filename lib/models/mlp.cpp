// Fully connected networks with analytic derivatives (theory/mlp.md).
#include "sgdstab/mlp.hpp"

#include <cmath>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using detail::require;

// ---------------------------------------------------------------------------
// Names

// ---------------------------------------------------------------------------
// Spec

void MlpSpec::validate() const {
  require(widths.size() >= 2, "MlpSpec::widths",
          "needs at least 2 entries (inputs, outputs), got " + std::to_string(widths.size()));
  for (std::size_t l = 0; l < widths.size(); ++l)
    require(widths[l] >= 1, "MlpSpec::widths",
            "entry " + std::to_string(l) + " must be >= 1, got " + std::to_string(widths[l]));
  const std::size_t hidden = widths.size() - 2;
  require(activations.size() == hidden || activations.size() == 1 || (activations.empty() && hidden == 0),
          "MlpSpec::activations",
          "needs one entry per hidden layer (" + std::to_string(hidden) + ") or a single entry, got " +
              std::to_string(activations.size()));
  require(trainable.empty() || trainable.size() == widths.size() - 1, "MlpSpec::trainable",
          "needs one flag per layer (" + std::to_string(widths.size() - 1) + ") or none, got " +
              std::to_string(trainable.size()));
  bool any = trainable.empty();
  for (bool t : trainable) any = any || t;
  require(any, "MlpSpec::trainable", "at least one layer must be trainable");
  require(std::isfinite(output_scale) && output_scale != 0.0, "MlpSpec::output_scale",
          "must be finite and nonzero, got " + detail::fmt(output_scale));
}

double MlpSpec::weight_count() const {
  double count = 0.0;
  for (std::size_t l = 1; l < widths.size(); ++l)
    count += static_cast<double>(widths[l]) * (static_cast<double>(widths[l - 1]) + (bias ? 1.0 : 0.0));
  return count;
}

double MlpSpec::unit_count() const {
  double count = 0.0;
  for (Index w : widths) count += static_cast<double>(w);
  return count;
}

Activation MlpSpec::activation(Index hidden_layer) const {
  require(hidden_layer >= 1 && hidden_layer < layers(), "MlpSpec::activation",
          "hidden layer must satisfy 1 <= l <= " + std::to_string(layers() - 1) + ", got " +
              std::to_string(hidden_layer));
  return activations.size() == 1 ? activations[0] : activations[static_cast<std::size_t>(hidden_layer - 1)];
}

bool MlpSpec::is_trainable(Index layer) const {
  require(layer >= 1 && layer <= layers(), "MlpSpec::is_trainable",
          "layer must satisfy 1 <= l <= " + std::to_string(layers()) + ", got " + std::to_string(layer));
  return trainable.empty() || trainable[static_cast<std::size_t>(layer - 1)];
}

bool MlpSpec::linear_in_parameters() const {
  for (Index l = 1; l < layers(); ++l)
    if (is_trainable(l)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Activations: sigma, sigma', sigma'' elementwise (theory/mlp.md, table 1)

namespace {

constexpr double kTwoOverSqrtPi = 1.1283791670955126;

double act(Activation a, double z) {
  switch (a) {
    case Activation::identity: return z;
    case Activation::relu: return z > 0.0 ? z : 0.0;
    case Activation::tanh: return std::tanh(z);
    case Activation::erf: return std::erf(z);
    case Activation::softplus: return z > 0.0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
  }
  return 0.0;
}

double sigmoid(double z) {
  return z >= 0.0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
}

double act_d1(Activation a, double z) {
  switch (a) {
    case Activation::identity: return 1.0;
    case Activation::relu: return z > 0.0 ? 1.0 : 0.0;
    case Activation::tanh: {
      const double t = std::tanh(z);
      return 1.0 - t * t;
    }
    case Activation::erf: return kTwoOverSqrtPi * std::exp(-z * z);
    case Activation::softplus: return sigmoid(z);
  }
  return 0.0;
}

double act_d2(Activation a, double z) {
  switch (a) {
    case Activation::identity:
    case Activation::relu: return 0.0;
    case Activation::tanh: {
      const double t = std::tanh(z);
      return -2.0 * t * (1.0 - t * t);
    }
    case Activation::erf: return -2.0 * z * kTwoOverSqrtPi * std::exp(-z * z);
    case Activation::softplus: {
      const double s = sigmoid(z);
      return s * (1.0 - s);
    }
  }
  return 0.0;
}

MatrixXd apply(Activation a, const MatrixXd& z, double (*f)(Activation, double)) {
  MatrixXd out(z.rows(), z.cols());
  const Index size = z.size();
  for (Index i = 0; i < size; ++i) out.data()[i] = f(a, z.data()[i]);
  return out;
}

bool all_finite(const Eigen::Ref<const MatrixXd>& m) { return m.allFinite(); }

}  // namespace

// ---------------------------------------------------------------------------
// Construction and parameters

Mlp::Mlp(MlpSpec spec, std::uint64_t seed) : spec_(std::move(spec)) {
  spec_.validate();
  check_memory(8.0 * 2.0 * spec_.weight_count(), "the network's weights (" + detail::fmt(spec_.weight_count()) + ")");
  const Index L = spec_.layers();
  const double gain = spec_.init == Init::he ? 2.0 : 1.0;
  Rng rng(seed);
  for (Index l = 1; l <= L; ++l) {
    const Index fan_in = spec_.widths[static_cast<std::size_t>(l - 1)];
    const Index fan_out = spec_.widths[static_cast<std::size_t>(l)];
    double s = 1.0, sd = std::sqrt(gain / static_cast<double>(fan_in));
    if (spec_.parametrization != Parametrization::standard) {
      s = sd;
      sd = 1.0;
      if (spec_.parametrization == Parametrization::mean_field && l == L)
        s = 1.0 / static_cast<double>(fan_in);
    }
    if (l == L) s *= spec_.output_scale;
    // Weights drawn row by row (theory/mlp.md, section 3): W_l(a, b) for a, then b.
    MatrixXd w(fan_out, fan_in);
    for (Index a = 0; a < fan_out; ++a)
      for (Index b = 0; b < fan_in; ++b) w(a, b) = sd * rng.normal();
    w_.push_back(std::move(w));
    b_.push_back(spec_.bias ? VectorXd::Zero(fan_out) : VectorXd());
    s_.push_back(s);
    if (spec_.is_trainable(l)) num_params_ += fan_out * fan_in + (spec_.bias ? fan_out : 0);
  }
}

double Mlp::multiplier(Index layer) const {
  require(layer >= 1 && layer <= spec_.layers(), "Mlp::multiplier",
          "layer must satisfy 1 <= layer <= " + std::to_string(spec_.layers()));
  return s_[static_cast<std::size_t>(layer - 1)];
}

const MatrixXd& Mlp::weight(Index layer) const {
  require(layer >= 1 && layer <= spec_.layers(), "Mlp::weight",
          "layer must satisfy 1 <= layer <= " + std::to_string(spec_.layers()));
  return w_[static_cast<std::size_t>(layer - 1)];
}

const VectorXd& Mlp::bias(Index layer) const {
  require(layer >= 1 && layer <= spec_.layers(), "Mlp::bias",
          "layer must satisfy 1 <= layer <= " + std::to_string(spec_.layers()));
  return b_[static_cast<std::size_t>(layer - 1)];
}

void Mlp::set_weight(Index layer, const MatrixXd& w) {
  const MatrixXd& old = weight(layer);
  require(w.rows() == old.rows() && w.cols() == old.cols(), "Mlp::set_weight",
          "shape must be " + std::to_string(old.rows()) + " x " + std::to_string(old.cols()));
  require(all_finite(w), "Mlp::set_weight", "entries must be finite");
  w_[static_cast<std::size_t>(layer - 1)] = w;
}

void Mlp::set_bias(Index layer, const VectorXd& b) {
  const VectorXd& old = bias(layer);
  require(b.size() == old.size(), "Mlp::set_bias",
          "length must be " + std::to_string(old.size()) + " (0 without biases)");
  require(all_finite(b), "Mlp::set_bias", "entries must be finite");
  b_[static_cast<std::size_t>(layer - 1)] = b;
}

VectorXd Mlp::parameters() const {
  VectorXd theta(num_params_);
  Index off = 0;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const MatrixXd& w = w_[static_cast<std::size_t>(l - 1)];
    Eigen::Map<RowMatrix>(theta.data() + off, w.rows(), w.cols()) = w;
    off += w.size();
    const VectorXd& b = b_[static_cast<std::size_t>(l - 1)];
    theta.segment(off, b.size()) = b;
    off += b.size();
  }
  return theta;
}

void Mlp::set_parameters(const Eigen::Ref<const VectorXd>& theta) {
  require(theta.size() == num_params_, "Mlp::set_parameters",
          "theta must have p = " + std::to_string(num_params_) + " entries, got " +
              std::to_string(theta.size()));
  require(theta.allFinite(), "Mlp::set_parameters", "theta has NaN or Inf entries");
  Index off = 0;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    MatrixXd& w = w_[static_cast<std::size_t>(l - 1)];
    w = Eigen::Map<const RowMatrix>(theta.data() + off, w.rows(), w.cols());
    off += w.size();
    VectorXd& b = b_[static_cast<std::size_t>(l - 1)];
    b = theta.segment(off, b.size());
    off += b.size();
  }
}

// ---------------------------------------------------------------------------
// Forward and backward passes (theory/mlp.md, eqs. 1 and 3)

struct Mlp::Trace {
  std::vector<MatrixXd> z;  // z[l], l = 1..L: n x m_l pre-activations (z[0] unused)
  std::vector<MatrixXd> h;  // h[l], l = 0..L-1: n x m_l layer inputs (h[0] = X)
};

void Mlp::check_inputs(const Eigen::Ref<const MatrixXd>& x, const char* where) const {
  require(x.rows() >= 1, where, "X must have at least one row (sample)");
  require(x.cols() == inputs(), where,
          "X must have d = " + std::to_string(inputs()) + " columns, got " + std::to_string(x.cols()));
  require(x.allFinite(), where, "X has NaN or Inf entries");
}

void Mlp::check_targets(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                        const char* where) const {
  check_inputs(x, where);
  require(y.rows() == x.rows() && y.cols() == outputs(), where,
          "Y must be n x c = " + std::to_string(x.rows()) + " x " + std::to_string(outputs()) + ", got " +
              std::to_string(y.rows()) + " x " + std::to_string(y.cols()));
  require(y.allFinite(), where, "Y has NaN or Inf entries");
}

Mlp::Trace Mlp::run_forward(const Eigen::Ref<const MatrixXd>& x) const {
  const Index L = spec_.layers();
  check_memory(8.0 * 3.0 * static_cast<double>(x.rows()) * spec_.unit_count(),
               "the activations of " + std::to_string(x.rows()) + " samples");
  Trace t;
  t.z.resize(static_cast<std::size_t>(L + 1));
  t.h.resize(static_cast<std::size_t>(L));
  t.h[0] = x;
  for (Index l = 1; l <= L; ++l) {
    const auto li = static_cast<std::size_t>(l);
    MatrixXd z = s_[li - 1] * (t.h[li - 1] * w_[li - 1].transpose());
    if (spec_.bias) z.rowwise() += b_[li - 1].transpose();
    if (l < L) t.h[li] = apply(spec_.activation(l), z, act);
    t.z[li] = std::move(z);
  }
  return t;
}

// deltas[l] = d(sum_ik seed_ik f_k(x_i)) / d z_l, for l = lowest trainable .. L.
std::vector<MatrixXd> Mlp::backward(const Trace& t, MatrixXd seed) const {
  const Index L = spec_.layers();
  Index lowest = 1;
  while (!spec_.is_trainable(lowest)) ++lowest;
  std::vector<MatrixXd> d(static_cast<std::size_t>(L + 1));
  d[static_cast<std::size_t>(L)] = std::move(seed);
  for (Index l = L; l > lowest; --l) {
    const auto li = static_cast<std::size_t>(l);
    d[li - 1] = (s_[li - 1] * (d[li] * w_[li - 1]))
                    .cwiseProduct(apply(spec_.activation(l - 1), t.z[li - 1], act_d1));
  }
  return d;
}

VectorXd Mlp::gather_gradient(const Trace& t, const std::vector<MatrixXd>& d) const {
  VectorXd g(num_params_);
  Index off = 0;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const auto li = static_cast<std::size_t>(l);
    const MatrixXd gw = s_[li - 1] * (d[li].transpose() * t.h[li - 1]);
    Eigen::Map<RowMatrix>(g.data() + off, gw.rows(), gw.cols()) = gw;
    off += gw.size();
    if (spec_.bias) {
      g.segment(off, gw.rows()) = d[li].colwise().sum().transpose();
      off += gw.rows();
    }
  }
  return g;
}

MatrixXd Mlp::forward(const Eigen::Ref<const MatrixXd>& x) const {
  check_inputs(x, "Mlp::forward");
  return run_forward(x).z.back();
}

MatrixXd Mlp::features(const Eigen::Ref<const MatrixXd>& x) const {
  check_inputs(x, "Mlp::features");
  return run_forward(x).h.back();
}

MatrixXd Mlp::residuals(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y) const {
  check_targets(x, y, "Mlp::residuals");
  return run_forward(x).z.back() - y;
}

double Mlp::loss(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y) const {
  return 0.5 * residuals(x, y).squaredNorm() / static_cast<double>(x.rows());
}

VectorXd Mlp::gradient(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y) const {
  check_targets(x, y, "Mlp::gradient");
  const Trace t = run_forward(x);
  return gather_gradient(t, backward(t, (t.z.back() - y) / static_cast<double>(x.rows())));
}

VectorXd Mlp::batch_gradient(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                             const std::vector<Index>& batch, double divisor) const {
  check_targets(x, y, "Mlp::batch_gradient");
  return batch_gradient_unchecked(x, y, batch, divisor);
}

VectorXd Mlp::batch_gradient_unchecked(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                                       const std::vector<Index>& batch, double divisor) const {
  require(divisor > 0.0, "Mlp::batch_gradient", "divisor must be > 0, got " + detail::fmt(divisor));
  if (batch.empty()) return VectorXd::Zero(num_params_);
  const auto m = static_cast<Index>(batch.size());
  MatrixXd xb(m, x.cols()), yb(m, y.cols());
  for (Index j = 0; j < m; ++j) {
    const Index i = batch[static_cast<std::size_t>(j)];
    require(i >= 0 && i < x.rows(), "Mlp::batch_gradient",
            "batch index " + std::to_string(i) + " outside 0..n-1 = " + std::to_string(x.rows() - 1));
    xb.row(j) = x.row(i);
    yb.row(j) = y.row(i);
  }
  const Trace t = run_forward(xb);
  return gather_gradient(t, backward(t, (t.z.back() - yb) / divisor));
}

VectorXd Mlp::vjp(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const VectorXd>& u) const {
  check_inputs(x, "Mlp::vjp");
  require(u.size() == x.rows() * outputs(), "Mlp::vjp",
          "u must have n c = " + std::to_string(x.rows() * outputs()) + " entries, got " +
              std::to_string(u.size()));
  const VectorXd uc = u;  // contiguous copy for the row-major view
  const Trace t = run_forward(x);
  return gather_gradient(t, backward(t, Eigen::Map<const RowMatrix>(uc.data(), x.rows(), outputs())));
}

// A direction in theta split per layer (empty blocks for frozen layers).
struct Mlp::LayerDirection {
  std::vector<MatrixXd> w;
  std::vector<VectorXd> b;
};

Mlp::LayerDirection Mlp::unpack(const Eigen::Ref<const VectorXd>& v, const char* where) const {
  require(v.size() == num_params_, where,
          "v must have p = " + std::to_string(num_params_) + " entries, got " + std::to_string(v.size()));
  require(v.allFinite(), where, "v has NaN or Inf entries");
  LayerDirection dir;
  dir.w.resize(w_.size());
  dir.b.resize(w_.size());
  Index off = 0;
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const auto li = static_cast<std::size_t>(l - 1);
    dir.w[li] = Eigen::Map<const RowMatrix>(v.data() + off, w_[li].rows(), w_[li].cols());
    off += w_[li].size();
    dir.b[li] = v.segment(off, b_[li].size());
    off += b_[li].size();
  }
  return dir;
}

// Forward-mode pass: R{z_l} for direction v (theory/mlp.md, eq. 7).
std::vector<MatrixXd> Mlp::forward_directional(const Trace& t, const LayerDirection& v) const {
  const MlpSpec& spec = spec_;
  const std::vector<MatrixXd>& w = w_;
  const std::vector<double>& s = s_;
  const std::vector<MatrixXd>& z = t.z;
  const std::vector<MatrixXd>& h = t.h;
  const Index L = spec.layers();
  const Index n = h[0].rows();
  std::vector<MatrixXd> rz(static_cast<std::size_t>(L + 1));
  MatrixXd rh;  // R{h_{l-1}}; empty while it is zero (below the lowest trainable layer)
  for (Index l = 1; l <= L; ++l) {
    const auto li = static_cast<std::size_t>(l);
    const bool trainable = spec.is_trainable(l);
    if (!trainable && rh.size() == 0) continue;  // R{z_l} = 0 below the lowest trainable layer
    MatrixXd r = MatrixXd::Zero(n, w[li - 1].rows());
    if (trainable) r.noalias() += s[li - 1] * (h[li - 1] * v.w[li - 1].transpose());
    if (rh.size() > 0) r.noalias() += s[li - 1] * (rh * w[li - 1].transpose());
    if (trainable && spec.bias) r.rowwise() += v.b[li - 1].transpose();
    if (l < L && (trainable || rh.size() > 0))
      rh = r.cwiseProduct(apply(spec.activation(l), z[li], act_d1));
    rz[li] = std::move(r);
  }
  return rz;
}

VectorXd Mlp::jvp(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const VectorXd>& v) const {
  check_inputs(x, "Mlp::jvp");
  const LayerDirection dir = unpack(v, "Mlp::jvp");
  const Trace t = run_forward(x);
  const MatrixXd rz = forward_directional(t, dir).back();
  VectorXd out(rz.size());
  Eigen::Map<RowMatrix>(out.data(), rz.rows(), rz.cols()) = rz;
  return out;
}

VectorXd Mlp::gauss_newton_vp(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const VectorXd>& v) const {
  return vjp(x, jvp(x, v)) / static_cast<double>(x.rows());
}

// Pearlmutter's R-operator applied to the backward pass (theory/mlp.md, eq. 8).
VectorXd Mlp::hvp(const Eigen::Ref<const MatrixXd>& x, const Eigen::Ref<const MatrixXd>& y,
                  const Eigen::Ref<const VectorXd>& v) const {
  check_targets(x, y, "Mlp::hvp");
  const LayerDirection dir = unpack(v, "Mlp::hvp");
  const Index L = spec_.layers();
  const double inv_n = 1.0 / static_cast<double>(x.rows());
  const Trace t = run_forward(x);
  const std::vector<MatrixXd> rz = forward_directional(t, dir);
  // R{h_l} for the weight-gradient terms; empty where it is zero (h_0 = X, and
  // below the lowest trainable layer, where rz is empty too).
  std::vector<MatrixXd> rh(static_cast<std::size_t>(L));
  for (Index l = 1; l < L; ++l) {
    const auto li = static_cast<std::size_t>(l);
    if (rz[li].size() > 0) rh[li] = rz[li].cwiseProduct(apply(spec_.activation(l), t.z[li], act_d1));
  }
  Index lowest = 1;
  while (!spec_.is_trainable(lowest)) ++lowest;
  MatrixXd g = (t.z.back() - y) * inv_n;  // dL/dz_L
  MatrixXd rg = rz.back() * inv_n;        // R{dL/dz_L}
  VectorXd out(num_params_);
  // Walk down, writing each trainable layer's block at its offset.
  std::vector<Index> offset(static_cast<std::size_t>(L + 1), 0);
  for (Index l = 1, off = 0; l <= L; ++l) {
    offset[static_cast<std::size_t>(l)] = off;
    if (spec_.is_trainable(l)) off += w_[static_cast<std::size_t>(l - 1)].size() + (spec_.bias ? w_[static_cast<std::size_t>(l - 1)].rows() : 0);
  }
  for (Index l = L; l >= lowest; --l) {
    const auto li = static_cast<std::size_t>(l);
    const double s = s_[li - 1];
    if (spec_.is_trainable(l)) {
      MatrixXd rgw = s * (rg.transpose() * t.h[li - 1]);
      if (rh[li - 1].size() > 0) rgw.noalias() += s * (g.transpose() * rh[li - 1]);
      Index off = offset[li];
      Eigen::Map<RowMatrix>(out.data() + off, rgw.rows(), rgw.cols()) = rgw;
      off += rgw.size();
      if (spec_.bias) out.segment(off, rgw.rows()) = rg.colwise().sum().transpose();
    }
    if (l == lowest) break;
    const Activation a = spec_.activation(l - 1);
    const MatrixXd back = s * (g * w_[li - 1]);  // s_l g W_l
    MatrixXd rback = s * (rg * w_[li - 1]);
    if (spec_.is_trainable(l)) rback.noalias() += s * (g * dir.w[li - 1]);
    const MatrixXd d1 = apply(a, t.z[li - 1], act_d1);
    rg = rback.cwiseProduct(d1) + back.cwiseProduct(apply(a, t.z[li - 1], act_d2)).cwiseProduct(rz[li - 1]);
    g = back.cwiseProduct(d1);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Jacobian and Gram (theory/mlp.md, eqs. 4-6)

MatrixXd Mlp::jacobian(const Eigen::Ref<const MatrixXd>& x) const {
  check_inputs(x, "Mlp::jacobian");
  const Index n = x.rows(), c = outputs();
  check_memory(8.0 * static_cast<double>(n * c) * static_cast<double>(num_params_),
               "the Jacobian (" + std::to_string(n * c) + " x " + std::to_string(num_params_) + ")");
  const Trace t = run_forward(x);
  MatrixXd jac(n * c, num_params_);
  for (Index k = 0; k < c; ++k) {
    MatrixXd seed = MatrixXd::Zero(n, c);
    seed.col(k).setOnes();
    const std::vector<MatrixXd> d = backward(t, seed);
    Index off = 0;
    for (Index l = 1; l <= spec_.layers(); ++l) {
      if (!spec_.is_trainable(l)) continue;
      const auto li = static_cast<std::size_t>(l);
      const Index rows = w_[li - 1].rows(), cols = w_[li - 1].cols();
      for (Index i = 0; i < n; ++i)
        for (Index a = 0; a < rows; ++a)
          jac.row(i * c + k).segment(off + a * cols, cols) = (s_[li - 1] * d[li](i, a)) * t.h[li - 1].row(i);
      off += rows * cols;
      if (spec_.bias) {
        for (Index i = 0; i < n; ++i) jac.row(i * c + k).segment(off, rows) = d[li].row(i);
        off += rows;
      }
    }
  }
  return jac;
}

MatrixXd Mlp::gram(const Eigen::Ref<const MatrixXd>& x) const {
  check_inputs(x, "Mlp::gram");
  const Index n = x.rows(), c = outputs(), nc = n * c;
  Index widest = 0;
  for (const MatrixXd& w : w_) widest = std::max(widest, std::max(w.rows(), w.cols()));
  // K and one D_l D_l^T, X X^T, one D_l, the c backward passes and the trace.
  check_memory(8.0 * (2.0 * static_cast<double>(nc) * static_cast<double>(nc) +
                      static_cast<double>(n) * static_cast<double>(n) +
                      static_cast<double>(nc) * static_cast<double>(widest) +
                      (static_cast<double>(c) + 3.0) * static_cast<double>(n) * spec_.unit_count()),
               "the NTK Gram (" + std::to_string(nc) + " x " + std::to_string(nc) + ")");
  const Trace t = run_forward(x);
  // deltas for every output k, stacked as D_l with row i*c + k.
  std::vector<std::vector<MatrixXd>> per_output;
  for (Index k = 0; k < c; ++k) {
    MatrixXd seed = MatrixXd::Zero(n, c);
    seed.col(k).setOnes();
    per_output.push_back(backward(t, seed));
  }
  MatrixXd gram = MatrixXd::Zero(nc, nc);
  for (Index l = 1; l <= spec_.layers(); ++l) {
    if (!spec_.is_trainable(l)) continue;
    const auto li = static_cast<std::size_t>(l);
    const Index m = w_[li - 1].rows();
    MatrixXd d(nc, m);
    for (Index k = 0; k < c; ++k)
      for (Index i = 0; i < n; ++i) d.row(i * c + k) = per_output[static_cast<std::size_t>(k)][li].row(i);
    MatrixXd dd = MatrixXd::Zero(nc, nc);  // D_l D_l^T, lower triangle
    detail::syrk_lower(false, 1.0, d.data(), nc, m, nc, dd);
    d.resize(0, 0);
    const MatrixXd& h = t.h[li - 1];
    MatrixXd hh = MatrixXd::Zero(n, n);  // h_{l-1} h_{l-1}^T, lower triangle
    detail::syrk_lower(false, 1.0, h.data(), n, h.cols(), n, hh);
    const double s2 = s_[li - 1] * s_[li - 1];
    const double b = spec_.bias ? 1.0 : 0.0;
    for (Index j = 0; j < n; ++j)
      for (Index i = j; i < n; ++i) {
        const double factor = s2 * hh(i, j) + b;
        for (Index kj = 0; kj < c; ++kj)
          for (Index ki = (i == j ? kj : 0); ki < c; ++ki)
            gram(i * c + ki, j * c + kj) += factor * dd(i * c + ki, j * c + kj);
      }
  }
  detail::symmetrize_from_lower(gram);
  return gram;
}

MatrixXd teacher_targets(const MlpSpec& teacher, const Eigen::Ref<const MatrixXd>& x, std::uint64_t seed) {
  return Mlp(teacher, seed).forward(x);
}

}  // namespace sgdstab
