// Geometry of a CNN at its current parameters: batched per-sample Jacobians,
// the Gram streamed in chunks, and the alignment mu (theory/cnn.md,
// sections 5.1 and 8). Hessian-vector products: cnn_hessian.cpp.
#include <Eigen/Eigenvalues>
#include <algorithm>
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

namespace F = torch::nn::functional;

// theory/cnn.md, section 5.1. One forward pass of the chunk keeps every layer's
// input a_{l-1} and pre-activation z_l; for each output k one reverse pass of
// sum_i f_k(x_i) gives dz_l for all samples at once (samples do not interact:
// no batch-norm). Per sample i:
//   convolution: dW = dz_i (C_out x P) . unfold(a_i)^T (P x C_in 9), db = sum_P dz_i   (formed)
//   linear:      dW = dz_i a_i^T,                                   db = dz_i         (kept as factors)
Cnn::Factors Cnn::factors(const torch::Tensor& x) const {
  const int64_t m = x.size(0), c = spec_.outputs;
  std::vector<torch::Tensor> inputs, pre;
  torch::Tensor out = x;
  for (std::size_t l = 0; l < conv_w_.size(); ++l) {
    inputs.push_back(out.detach());
    pre.push_back(torch::conv2d(out, conv_w_[l], conv_b_[l], 1, 1));
    out = torch::relu(pre.back());
    if (spec_.pools_after(l)) out = torch::max_pool2d(out, 2);
  }
  out = out.flatten(1);
  for (std::size_t l = 0; l < fc_w_.size(); ++l) {
    inputs.push_back(out.detach());
    pre.push_back(torch::addmm(fc_b_[l], out, fc_w_[l].t()));
    out = l + 1 < fc_w_.size() ? torch::relu(pre.back()) : pre.back();
  }
  const std::size_t nconv = conv_w_.size(), nfc = fc_w_.size();
  std::vector<torch::Tensor> unfolded;  // m x (C_in 9) x P, the same for every output
  for (std::size_t l = 0; l < nconv; ++l)
    unfolded.push_back(F::unfold(inputs[l], F::UnfoldFuncOptions({3, 3}).padding(1)));
  int64_t p_conv = 0;
  for (std::size_t l = 0; l < nconv; ++l) p_conv += conv_w_[l].numel() + conv_b_[l].numel();
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(device_);
  Factors f;
  f.conv = torch::empty({m, c, p_conv}, opts);
  for (std::size_t l = 0; l < nfc; ++l) {
    f.dz.push_back(torch::empty({m, c, fc_w_[l].size(0)}, opts));
    f.a.push_back(inputs[nconv + l]);
  }
  for (int64_t k = 0; k < c; ++k) {
    const auto dz = torch::autograd::grad({out.select(1, k).sum()}, pre, {}, /*retain_graph=*/k + 1 < c);
    torch::Tensor row = f.conv.select(1, k);
    int64_t off = 0;
    auto put = [&](const torch::Tensor& part) {
      const torch::Tensor flat = part.reshape({m, -1});
      row.narrow(1, off, flat.size(1)).copy_(flat);
      off += flat.size(1);
    };
    for (std::size_t l = 0; l < nconv; ++l) {
      const torch::Tensor g = dz[l].reshape({m, dz[l].size(1), -1});  // m x C_out x P
      put(torch::bmm(g, unfolded[l].transpose(1, 2)));
      put(g.sum(2));
    }
    for (std::size_t l = 0; l < nfc; ++l) f.dz[l].select(1, k).copy_(dz[nconv + l]);
  }
  f.conv = f.conv.reshape({m * c, p_conv});
  for (auto& d : f.dz) d = d.reshape({m * c, -1});
  return f;
}

double Cnn::factor_bytes_per_sample() const {
  const double c = static_cast<double>(spec_.outputs);
  double per = 0.0;
  for (std::size_t l = 0; l < conv_w_.size(); ++l)
    per += c * static_cast<double>(conv_w_[l].numel() + conv_b_[l].numel());
  for (std::size_t l = 0; l < fc_w_.size(); ++l)
    per += c * static_cast<double>(fc_w_[l].size(0)) + static_cast<double>(fc_w_[l].size(1));
  return 8.0 * per;
}

// The chunk's Jacobian transposed, p x (m c): row-major, that is Eigen's
// column-major layout of the (m c) x p block, written in one pass.
torch::Tensor Cnn::jacobian_chunk_t(const torch::Tensor& x) const {
  const Factors f = factors(x);
  const int64_t mc = f.conv.size(0), c = spec_.outputs;
  torch::Tensor jt = torch::empty({num_params_, mc}, f.conv.options());
  int64_t off = f.conv.size(1);
  jt.narrow(0, 0, off).copy_(f.conv.t());
  for (std::size_t l = 0; l < f.dz.size(); ++l) {
    const torch::Tensor dzt = f.dz[l].t();                          // out x (m c)
    const torch::Tensor at = f.a[l].repeat_interleave(c, 0).t();    // in x (m c)
    const int64_t out = dzt.size(0), in = at.size(0);
    torch::Tensor block = jt.narrow(0, off, out * in).view({out, in, mc});
    at::mul_out(block, dzt.unsqueeze(1), at.unsqueeze(0));
    off += out * in;
    jt.narrow(0, off, out).copy_(dzt);
    off += out;
  }
  return jt;
}

// K_ab = Jconv_a Jconv_b^T + sum_l (dZ_a dZ_b^T) o ((A_a A_b^T + 1) expanded to c x c blocks).
torch::Tensor Cnn::gram_block(const Factors& a, const Factors& b) const {
  const int64_t c = spec_.outputs;
  torch::Tensor k = torch::mm(a.conv, b.conv.t());
  for (std::size_t l = 0; l < a.dz.size(); ++l) {
    const torch::Tensor inner = (torch::mm(a.a[l], b.a[l].t()) + 1.0).repeat_interleave(c, 0).repeat_interleave(c, 1);
    k.add_(torch::mm(a.dz[l], b.dz[l].t()) * inner);
  }
  return k;
}

Index Cnn::auto_chunk(double bytes_per_sample) const {
  const double target = 64.0 * 1024.0 * 1024.0;
  return std::max<Index>(1, static_cast<Index>(target / std::max(bytes_per_sample, 1.0)));
}

MatrixXd Cnn::jacobian(const Eigen::Ref<const MatrixXd>& images, Index chunk) const {
  const torch::Tensor x = to_images(images);
  const Index n = images.rows(), c = spec_.outputs;
  require(chunk >= 0, "Cnn::jacobian", "chunk must be >= 0 (0 = automatic), got " + std::to_string(chunk));
  const double row_bytes = 8.0 * static_cast<double>(c) * static_cast<double>(num_params_);
  check_memory(8.0 * static_cast<double>(n * c) * static_cast<double>(num_params_) + 3.0 * row_bytes,
               "the CNN Jacobian (" + std::to_string(n * c) + " x " + std::to_string(num_params_) + ")");
  const Index step = std::min(n, chunk > 0 ? chunk : auto_chunk(3.0 * row_bytes));
  MatrixXd jac(n * c, num_params_);
  for (Index i0 = 0; i0 < n; i0 += step) {
    const Index m = std::min(step, n - i0);
    const torch::Tensor jt = jacobian_chunk_t(x.narrow(0, i0, m)).to(torch::kCPU).contiguous();
    jac.middleRows(i0 * c, m * c) = Eigen::Map<const MatrixXd>(jt.data_ptr<double>(), m * c, num_params_);
  }
  return jac;
}

MatrixXd Cnn::jacobian_naive(const Eigen::Ref<const MatrixXd>& images) const {
  const torch::Tensor x = to_images(images);
  const Index n = images.rows(), c = spec_.outputs;
  check_memory(8.0 * 2.0 * static_cast<double>(n * c) * static_cast<double>(num_params_),
               "the CNN Jacobian (" + std::to_string(n * c) + " x " + std::to_string(num_params_) + ")");
  MatrixXd jac(n * c, num_params_);
  for (Index i = 0; i < n; ++i) {
    const torch::Tensor f = forward(x.narrow(0, i, 1));
    for (Index k = 0; k < c; ++k) {
      const auto grads = torch::autograd::grad({f.select(1, k).sum()}, params_, {}, /*retain_graph=*/k + 1 < c);
      std::vector<torch::Tensor> flat;
      for (const auto& g : grads) flat.push_back(g.reshape({-1}));
      jac.row(i * c + k) = to_eigen(torch::cat(flat)).col(0).transpose();
    }
  }
  return jac;
}

namespace {

// How the Gram's factors are held: `chunk` samples per pass, `chunks`
// passes, `hold` chunks' factors at once (all of them when they fit).
struct GramPlan {
  Index chunk = 0, chunks = 0, hold = 0;
};

// The plan for n samples of `per_sample` bytes of factors within the
// options' memory limit (`automatic_chunk`: Cnn::auto_chunk's, for chunk 0). \throws resource_error when fewer than two chunks fit.
GramPlan plan_gram(Index n, double per_sample, Index automatic_chunk, const GramOptions& o) {
  double limit = o.memory_limit_bytes;
  if (limit == 0.0) {
    const double avail = static_cast<double>(available_memory_bytes());
    limit = avail > 0.0 ? 0.5 * avail : std::numeric_limits<double>::infinity();
  }
  GramPlan p;
  p.chunk = std::min(n, o.chunk > 0 ? o.chunk : automatic_chunk);
  if (o.chunk == 0 && std::isfinite(limit))  // an automatic chunk adapts to a small limit: at least two held
    p.chunk = std::max<Index>(1, std::min(p.chunk, static_cast<Index>(limit / (2.0 * per_sample))));
  p.chunks = (n + p.chunk - 1) / p.chunk;
  const double chunk_bytes = per_sample * static_cast<double>(p.chunk);
  const double hold = std::floor(limit / chunk_bytes);
  p.hold = hold >= static_cast<double>(p.chunks) ? p.chunks : static_cast<Index>(hold);
  if (p.hold < std::min<Index>(2, p.chunks))
    throw resource_error("the CNN Gram: a memory limit of " + format_bytes(limit) + " holds fewer than two chunks of " +
                         std::to_string(p.chunk) + " samples' gradient factors (" + format_bytes(chunk_bytes) +
                         " each); lower GramOptions::chunk or raise the limit");
  return p;
}

}  // namespace

// theory/cnn.md, section 5.1, eq. 5: K = J J^T by blocks of chunks, from the factors.
// When all factors fit: one pass per chunk. Otherwise panels of `hold - 1`
// chunks are kept and every later chunk is recomputed once per panel.
MatrixXd Cnn::gram(const Eigen::Ref<const MatrixXd>& images, const GramOptions& o, GramInfo* info) const {
  o.validate();
  const torch::Tensor x = to_images(images);
  const Index n = images.rows(), c = spec_.outputs, nc = n * c;
  const double per_sample = factor_bytes_per_sample();
  // The Gram twice (the tensor and its Eigen copy; on CUDA the tensor is on the device).
  check_memory(2.0 * 8.0 * static_cast<double>(nc) * static_cast<double>(nc),
               "the CNN Gram (" + std::to_string(nc) + " x " + std::to_string(nc) + ")");
  const GramPlan plan = plan_gram(n, per_sample, auto_chunk(3.0 * per_sample), o);
  const Index chunk = plan.chunk, chunks = plan.chunks, hold = plan.hold;
  auto first_row = [&](Index a) { return a * chunk * c; };
  auto compute = [&](Index a) {
    const Index i0 = a * chunk, m = std::min(chunk, n - i0);
    torch::AutoGradMode enable(true);
    return factors(x.narrow(0, i0, m));
  };
  torch::NoGradGuard no_grad;  // the block products need no graph
  torch::Tensor k = torch::empty({nc, nc}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  GramInfo gi;
  gi.chunk = chunk;
  gi.chunks = chunks;
  gi.streamed = hold < chunks;
  gi.bytes_per_sample = per_sample;
  const Index panel = gi.streamed ? hold - 1 : chunks;
  for (Index a0 = 0; a0 < chunks; a0 += panel) {
    const Index a1 = std::min(chunks, a0 + panel);
    std::vector<Factors> held;
    for (Index a = a0; a < a1; ++a, ++gi.passes) held.push_back(compute(a));
    auto put = [&](Index r0, Index s0, const torch::Tensor& block) {
      k.narrow(0, r0, block.size(0)).narrow(1, s0, block.size(1)).copy_(block);
      if (r0 != s0) k.narrow(0, s0, block.size(1)).narrow(1, r0, block.size(0)).copy_(block.t());
    };
    for (Index a = a0; a < a1; ++a)
      for (Index b = a; b < a1; ++b) put(first_row(a), first_row(b), gram_block(held[a - a0], held[b - a0]));
    for (Index b = a1; b < chunks; ++b, ++gi.passes) {
      const Factors fb = compute(b);
      for (Index a = a0; a < a1; ++a) put(first_row(a), first_row(b), gram_block(held[a - a0], fb));
    }
  }
  if (info) *info = gi;
  MatrixXd out = to_eigen(k);
  k = torch::Tensor();  // release before symmetrizing in place
  for (Index jc = 0; jc < nc; ++jc)
    for (Index ir = jc + 1; ir < nc; ++ir) out(ir, jc) = out(jc, ir) = 0.5 * (out(ir, jc) + out(jc, ir));
  return out;
}

AlignmentSample alignment_at(const Cnn& net, const Eigen::Ref<const MatrixXd>& images,
                             const Eigen::Ref<const MatrixXd>& targets, Index step, const GramOptions& gram_options) {
  const Index n = images.rows(), c = net.spec().outputs;
  require(targets.rows() == n && targets.cols() == c && targets.allFinite(), "alignment_at",
          "targets must be a finite n x c = " + std::to_string(n) + " x " + std::to_string(c) + " matrix");
  const MatrixXd res = net.forward(images) - targets;
  VectorXd r(res.size());
  for (Index i = 0; i < n; ++i) r.segment(i * c, c) = res.row(i).transpose();
  const MatrixXd k = net.gram(images, gram_options);
  AlignmentSample a;
  a.step = step;
  a.loss = 0.5 * r.squaredNorm() / static_cast<double>(n);
  a.g_frobenius = k.norm() / static_cast<double>(n);
  a.mu = r.squaredNorm() > 0.0 ? alignment(k, c, r) : NAN;
  return a;
}

}  // namespace sgdstab::cnn
