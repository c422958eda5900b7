// Geometry of a CNN at its current parameters: batched per-sample Jacobians,
// the Gram streamed in chunks, Lanczos lambda_max from Hessian-vector
// products, and the alignment mu (theory/cnn.md, sections 3-4).
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>

#include "sgdstab/cnn.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/random.hpp"

namespace sgdstab::cnn {

using detail::require;
using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace F = torch::nn::functional;

// theory/cnn.md, section 3. One forward pass of the chunk keeps every layer's
// input a_{l-1} and pre-activation z_l; for each output k one reverse pass of
// sum_i f_k(x_i) gives dz_l for all samples at once (samples do not interact:
// no batch-norm). Per sample i:
//   convolution: dW = dz_i (C_out x P) . unfold(a_i)^T (P x C_in 9), db = sum_P dz_i
//   linear:      dW = dz_i a_i^T,                                   db = dz_i
torch::Tensor Cnn::jacobian_chunk(const torch::Tensor& x) const {
  const int64_t m = x.size(0), c = spec_.outputs;
  std::vector<torch::Tensor> inputs, pre;
  torch::Tensor a = x;
  for (std::size_t l = 0; l < conv_w_.size(); ++l) {
    inputs.push_back(a.detach());
    pre.push_back(torch::conv2d(a, conv_w_[l], conv_b_[l], 1, 1));
    a = torch::max_pool2d(torch::relu(pre.back()), 2);
  }
  a = a.flatten(1);
  for (std::size_t l = 0; l < fc_w_.size(); ++l) {
    inputs.push_back(a.detach());
    pre.push_back(torch::addmm(fc_b_[l], a, fc_w_[l].t()));
    a = l + 1 < fc_w_.size() ? torch::relu(pre.back()) : pre.back();
  }
  const std::size_t nconv = conv_w_.size();
  std::vector<torch::Tensor> unfolded;  // m x (C_in 9) x P, the same for every output
  for (std::size_t l = 0; l < nconv; ++l)
    unfolded.push_back(F::unfold(inputs[l], F::UnfoldFuncOptions({3, 3}).padding(1)));
  torch::Tensor jac = torch::empty({m, c, num_params_}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  for (int64_t k = 0; k < c; ++k) {
    const auto dz = torch::autograd::grad({a.select(1, k).sum()}, pre, {}, /*retain_graph=*/k + 1 < c);
    torch::Tensor row = jac.select(1, k);
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
    for (std::size_t l = 0; l < fc_w_.size(); ++l) {
      const torch::Tensor& g = dz[nconv + l];  // m x out
      put(g.unsqueeze(2) * inputs[nconv + l].unsqueeze(1));
      put(g);
    }
  }
  return jac.reshape({m * c, num_params_});
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
    jac.middleRows(i0 * c, m * c) = to_eigen(jacobian_chunk(x.narrow(0, i0, m)));
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

// theory/cnn.md, section 3: K = J J^T by blocks. With J held: one pass per
// chunk. Otherwise panels of `hold - 1` chunks are kept and every later chunk
// is recomputed once per panel and multiplied against it.
MatrixXd Cnn::gram(const Eigen::Ref<const MatrixXd>& images, const GramOptions& o, GramInfo* info) const {
  require(o.chunk >= 0, "Cnn::gram", "GramOptions::chunk must be >= 0 (0 = automatic)");
  require(o.memory_limit_bytes >= 0.0 && std::isfinite(o.memory_limit_bytes), "Cnn::gram",
          "GramOptions::memory_limit_bytes must be finite and >= 0 (0 = half the available memory)");
  const torch::Tensor x = to_images(images);
  const Index n = images.rows(), c = spec_.outputs, nc = n * c;
  const double row_bytes = 8.0 * static_cast<double>(c) * static_cast<double>(num_params_);  // one sample's rows
  check_memory(2.0 * 8.0 * static_cast<double>(nc) * static_cast<double>(nc),
               "the CNN Gram (" + std::to_string(nc) + " x " + std::to_string(nc) + ")");
  double limit = o.memory_limit_bytes;
  if (limit == 0.0) {
    const double avail = static_cast<double>(available_memory_bytes());
    limit = avail > 0.0 ? 0.5 * avail : std::numeric_limits<double>::infinity();
  }
  const Index chunk = std::min(n, o.chunk > 0 ? o.chunk : auto_chunk(3.0 * row_bytes));
  const Index chunks = (n + chunk - 1) / chunk;
  const double chunk_bytes = row_bytes * static_cast<double>(chunk);
  const double hold_d = std::floor(limit / chunk_bytes);
  const Index hold = hold_d >= static_cast<double>(chunks) ? chunks : static_cast<Index>(hold_d);
  if (hold < std::min<Index>(2, chunks))
    throw resource_error("the CNN Gram: a memory limit of " + format_bytes(limit) + " holds fewer than two chunks of " +
                         std::to_string(chunk) + " samples' Jacobian rows (" + format_bytes(chunk_bytes) +
                         " each); lower GramOptions::chunk or raise the limit");
  auto rows_of = [&](Index a) { return std::make_pair(a * chunk, std::min(chunk, n - a * chunk)); };
  auto compute = [&](Index a) {
    const auto [i0, m] = rows_of(a);
    return jacobian_chunk(x.narrow(0, i0, m));
  };
  torch::NoGradGuard no_grad_for_products;  // the chunk passes enable their own graphs below
  torch::Tensor k = torch::empty({nc, nc}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  GramInfo gi;
  gi.chunk = chunk;
  gi.chunks = chunks;
  gi.streamed = hold < chunks;
  const Index panel = gi.streamed ? hold - 1 : chunks;
  for (Index a0 = 0; a0 < chunks; a0 += panel) {
    const Index a1 = std::min(chunks, a0 + panel);
    std::vector<torch::Tensor> parts;
    for (Index a = a0; a < a1; ++a) {
      torch::AutoGradMode enable(true);
      parts.push_back(compute(a));
      ++gi.passes;
    }
    const torch::Tensor jp = torch::cat(parts);
    const Index r0 = rows_of(a0).first * c, rn = jp.size(0);
    k.narrow(0, r0, rn).narrow(1, r0, rn).copy_(torch::mm(jp, jp.t()));
    for (Index b = a1; b < chunks; ++b) {
      torch::Tensor jb;
      {
        torch::AutoGradMode enable(true);
        jb = compute(b);
        ++gi.passes;
      }
      const Index s0 = rows_of(b).first * c, sn = jb.size(0);
      const torch::Tensor block = torch::mm(jp, jb.t());
      k.narrow(0, r0, rn).narrow(1, s0, sn).copy_(block);
      k.narrow(0, s0, sn).narrow(1, r0, rn).copy_(block.t());
    }
  }
  if (info) *info = gi;
  MatrixXd out = to_eigen(k);
  return 0.5 * (out + out.transpose());
}

// theory/cnn.md, section 4: Lanczos with full reorthogonalization.
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
  est.message = "iteration limit reached";
  for (Index j = 0; j < m; ++j) {
    VectorXd w = net.hvp(images, targets, q.col(j));
    est.iterations = j + 1;
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
      est.message = "non-finite Hessian-vector product";
      break;
    }
    if (est.residual <= o.tolerance * scale) {
      est.converged = true;
      est.message = "residual bound below tolerance";
      break;
    }
    if (beta.back() <= 1e-14 * scale || j + 1 == p) {  // invariant subspace: the Ritz values are exact
      est.converged = true;
      est.message = "invariant subspace found";
      break;
    }
    q.col(j + 1) = w / beta.back();
  }
  est.lower = est.lambda_max;
  est.upper = est.lambda_max + est.residual;
  return est;
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
