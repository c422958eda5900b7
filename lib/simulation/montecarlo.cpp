// Monte Carlo cross-checks (theory/montecarlo.md).
#include "sgdstab/montecarlo.hpp"


#include <algorithm>
#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>
#include <tuple>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "solvers/eigensolve.hpp"
#include <complex>
#include "sgdstab/adaptive.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/loss_curvature.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/weight_decay.hpp"
#include "sgdstab/stability.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::require;

namespace {

void check_common(const Geometry& g, double lr, Index batch, double confidence, const char* where,
                  const Momentum& momentum = {}, double weight_decay = 0.0, double decoupled = 0.0) {
  momentum.validate();
  require(std::isfinite(weight_decay) && weight_decay >= 0.0, where,
          "weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  require(std::isfinite(decoupled) && decoupled >= 0.0, where,
          "decoupled weight decay must be finite and >= 0, got " + detail::fmt(decoupled));
  require(decoupled == 0.0 || momentum.beta == 0.0 || !momentum.nesterov, where,
          "decoupled weight decay is defined for heavy-ball momentum (AdamW), not Nesterov");
  require(std::isfinite(lr) && lr > 0.0, where, "lr must be finite and > 0, got " + detail::fmt(lr));
  check_batch(batch, g.samples(), where);
  require(confidence > 0.0 && confidence < 1.0, where,
          "confidence must lie in (0, 1), got " + detail::fmt(confidence));
}

// Two-sided Student-t quantile for a confidence level and `samples` values.
double t_quantile(double confidence, Index samples) {
  boost::math::students_t dist(static_cast<double>(samples - 1));
  return boost::math::quantile(dist, 0.5 + 0.5 * confidence);
}

MomentEstimate summarize(Index step, std::vector<double>& values, double confidence) {
  MomentEstimate e;
  e.step = step;
  for (double v : values)
    if (!std::isfinite(v)) ++e.nonfinite;
  if (e.nonfinite > 0) {  // overflowed trajectories: the moment is not estimable
    e.mean = e.ci_low = e.ci_high = e.median = e.mean_log = INFINITY;
    e.max_share = 1.0;
    return e;
  }
  const auto m = static_cast<double>(values.size());
  double sum = 0.0, sum_log = 0.0;
  for (double v : values) {
    sum += v;
    sum_log += std::log(v);
  }
  e.mean = sum / m;
  e.mean_log = sum_log / m;
  e.max_share = sum > 0.0 ? *std::max_element(values.begin(), values.end()) / sum : 0.0;
  double ss = 0.0;
  for (double v : values) ss += (v - e.mean) * (v - e.mean);
  const double half = t_quantile(confidence, static_cast<Index>(values.size())) * std::sqrt(ss / (m - 1.0) / m);
  e.ci_low = e.mean - half;
  e.ci_high = e.mean + half;
  const std::size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
  e.median = values[mid];
  if (values.size() % 2 == 0) {
    const double below = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid));
    e.median = 0.5 * (e.median + below);
  }
  return e;
}

}  // namespace

// ---------------------------------------------------------------------------
// Where the Monte Carlo runs

namespace {

// The coordinates of the state (q of them) and the per-sample rows Z_i
// (C x q, h_i = Z_i^T Z_i): a Geometry's reduced coordinates (H = diag(d)),
// or, for Adam's and RMSProp's own L2 decay (theory/adaptive.md section 6),
// phi = P^{1/2} theta with rows J_i P^{-1/2} and the per-coordinate decay
// wd / P_k in place of the run's scalar lambda, always in momentum form (the
// 2q state, also at beta1 = 0, as adam_l2_spectral_radius's).
struct McSpace {
  const MatrixXd& rows;
  Index n, c, q;
  VectorXd curvature;  // H's diagonal where H is diagonal (reduced coordinates); empty: 1/2 |Z delta|^2 / n
  VectorXd decay;      // per-coordinate L2 decay; empty: the run's scalar weight_decay
  bool momentum_form() const { return decay.size() > 0; }
};

McSpace reduced_space(const Geometry& g) {
  return {g.factor(), g.samples(), g.outputs(), g.rank(), g.hessian_eigenvalues(), VectorXd()};
}

}  // namespace

// ---------------------------------------------------------------------------
// Linearized simulation (theory/montecarlo.md, eqs. 1-3)

void SimulationOptions::validate(const Geometry& g) const {
  check_common(g, lr, batch, confidence, "SimulationOptions", momentum, weight_decay, decoupled_weight_decay);
  require(steps >= 0, "SimulationOptions::steps", "must be >= 0, got " + std::to_string(steps));
  require(trajectories >= 2, "SimulationOptions::trajectories", "must be >= 2, got " + std::to_string(trajectories));
  require(start.size() == 0 || (start.size() == g.rank() && start.allFinite()), "SimulationOptions::start",
          "must be empty or a finite vector of length r = " + std::to_string(g.rank()) + ", got length " +
              std::to_string(start.size()));
}

namespace {

// Every trajectory's state (theory/montecarlo.md, section 2): delta (r x M),
// with momentum u = lr v (theory/momentum.md, eq. 1), and its batch sampler;
// work matrices for one step.
struct Trajectories {
  MatrixXd delta, u, step, y, weight;  // weight(i, j) = count of i in batch j / divisor
  std::vector<BatchSampler> samplers;
  std::vector<std::vector<Index>> touched;
};

Trajectories start_trajectories(const McSpace& g, const SimulationOptions& o) {
  const Index r = g.q, n = g.n, m = o.trajectories;
  Trajectories s;
  s.delta.resize(r, m);
  s.samplers.reserve(static_cast<std::size_t>(m));
  for (Index j = 0; j < m; ++j) {
    if (o.start.size() > 0) {
      s.delta.col(j) = o.start;
    } else {
      Rng rng(Rng::stream_seed(o.seed, static_cast<std::uint64_t>(j), 1));
      for (Index k = 0; k < r; ++k) s.delta(k, j) = rng.normal() / std::sqrt(static_cast<double>(r));
    }
    s.samplers.emplace_back(o.schedule, n, o.batch, Rng::stream_seed(o.seed, static_cast<std::uint64_t>(j), 2));
  }
  s.y.resize(n * g.c, m);
  s.weight = MatrixXd::Zero(n, m);
  if (o.momentum.beta > 0.0 || g.momentum_form()) {
    s.u = MatrixXd::Zero(r, m);
    s.step.resize(r, m);
  }
  s.touched.resize(static_cast<std::size_t>(m));
  return s;
}

// One SGD step of every trajectory, each on its own batch: Delta -= lr Z^T W Z Delta.
void advance(Trajectories& s, const McSpace& g, const SimulationOptions& o) {
  const MatrixXd& z = g.rows;  // (n c) x r
  const Index n = g.n, c = g.c, m = o.trajectories;
  for (Index j = 0; j < m; ++j) {
    double divisor = 1.0;
    const std::vector<Index>& b = s.samplers[static_cast<std::size_t>(j)].next(divisor);
    s.touched[static_cast<std::size_t>(j)] = b;
    for (Index i : b) s.weight(i, j) += 1.0 / divisor;
  }
  detail::gemm(false, false, 1.0, z, s.delta, 0.0, s.y);  // Y = Z Delta: per-sample projections
  for (Index j = 0; j < m; ++j)
    for (Index i = 0; i < n; ++i) {
      const double w = s.weight(i, j);
      for (Index k = 0; k < c; ++k) s.y(i * c + k, j) *= w;
    }
  if (o.momentum.beta == 0.0 && !g.momentum_form()) {
    // Delta <- (1 - lr lambda) Delta - lr Z^T W Y (theory/weight_decay.md, eq. 2; Y from the old Delta);
    // a decoupled mu adds to lambda here (the same step without momentum).
    detail::gemm(true, false, -o.lr, z, s.y, 1.0 - o.lr * (o.weight_decay + o.decoupled_weight_decay), s.delta);
  } else {
    detail::gemm(true, false, o.lr, z, s.y, 0.0, s.step);  // lr H_xi Delta
    if (o.weight_decay > 0.0) s.step += (o.lr * o.weight_decay) * s.delta;  // lr (H_xi + lambda) Delta (theory/momentum.md, section 8)
    if (g.momentum_form()) s.step += o.lr * (g.decay.asDiagonal() * s.delta);  // lr (H_xi + wd P^{-1}) Delta
    const double b = o.momentum.beta;
    s.u = b * s.u + s.step;                                    // u' = beta u + lr H_xi delta
    if (o.momentum.nesterov) s.delta -= s.step + b * s.u;      // delta' = delta - lr H_xi delta - beta u'
    else if (o.decoupled_weight_decay > 0.0)                   // delta' = (1 - lr mu) delta - u' (AdamW)
      s.delta = (1.0 - o.lr * o.decoupled_weight_decay) * s.delta - s.u;
    else s.delta -= s.u;                                       // delta' = delta - u'
  }
  for (Index j = 0; j < m; ++j)
    for (Index i : s.touched[static_cast<std::size_t>(j)]) s.weight(i, j) = 0.0;
}

}  // namespace

namespace {

SimulationResult simulate(const McSpace& g, const SimulationOptions& o) {
  const Index r = g.q, c = g.c, n = g.n, nc = n * c, m = o.trajectories;
  check_memory(8.0 * static_cast<double>(m) *
                   (2.0 * static_cast<double>(r) + static_cast<double>(nc) + 2.0 * static_cast<double>(n) +
                    4.0 * static_cast<double>(o.batch) + 16.0),
               "the Monte Carlo state (" + std::to_string(m) + " trajectories)");
  const VectorXd& d = g.curvature;
  Trajectories state = start_trajectories(g, o);
  VectorXd sample_losses;
  SimulationResult res;
  res.trajectories = m;
  std::vector<double> norms(static_cast<std::size_t>(m)), losses(static_cast<std::size_t>(m));
  auto record = [&](Index t) {
    if (d.size() == 0)  // H not diagonal here: 1/2 delta^T H delta = |Z delta|^2 / (2 n)
      sample_losses = (g.rows * state.delta).colwise().squaredNorm().transpose() / (2.0 * static_cast<double>(n));
    for (Index j = 0; j < m; ++j) {
      norms[static_cast<std::size_t>(j)] = state.delta.col(j).squaredNorm();
      losses[static_cast<std::size_t>(j)] =
          d.size() > 0 ? 0.5 * state.delta.col(j).cwiseAbs2().dot(d) : sample_losses(j);
    }
    res.squared_norm.push_back(summarize(t, norms, o.confidence));
    res.loss.push_back(summarize(t, losses, o.confidence));
  };
  record(0);
  const auto t0 = std::chrono::steady_clock::now();
  for (Index t = 1; t <= o.steps; ++t) {
    detail::throw_if_interrupted("simulate_linearized");
    advance(state, g, o);
    record(t);
    if (o.progress) o.progress(t, o.steps);
  }
  res.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.report.status = Status::converged;
  res.report.message = "every step ran";
  res.flops = 4.0 * static_cast<double>(nc) * static_cast<double>(r) * static_cast<double>(m) *
              static_cast<double>(o.steps);
  return res;
}

}  // namespace

SimulationResult simulate_linearized(const Geometry& g, const SimulationOptions& o) {
  o.validate(g);
  return simulate(reduced_space(g), o);
}

ExactMoments exact_moments(const Geometry& g, double lr, Index batch, Sampling sampling, Index steps,
                           const VectorXd& start, const Momentum& momentum, double weight_decay,
                           double decoupled_weight_decay) {
  check_common(g, lr, batch, 0.5, "exact_moments", momentum, weight_decay, decoupled_weight_decay);
  require(steps >= 0, "exact_moments", "steps must be >= 0, got " + std::to_string(steps));
  const Index r = g.rank();
  require(start.size() == 0 || start.size() == r, "exact_moments",
          "start must be empty or of length r = " + std::to_string(r));
  momentum.validate();
  const SecondMomentOperator op(g, batch, sampling);
  const VectorXd& d = g.hessian_eigenvalues();
  MatrixXd s = start.size() > 0 ? MatrixXd(start * start.transpose())
                                : MatrixXd(MatrixXd::Identity(r, r) / static_cast<double>(r));
  ExactMoments out;
  if (momentum.beta > 0.0) {
    const MomentumOperator mop(op, lr, momentum, weight_decay, decoupled_weight_decay);
    MatrixXd zz = MatrixXd::Zero(2 * r, 2 * r);
    zz.topLeftCorner(r, r) = s;
    for (Index t = 0; t <= steps; ++t) {
      detail::throw_if_interrupted("exact_moments");
      if (t > 0) zz = mop.apply(zz);
      out.squared_norm.push_back(zz.topLeftCorner(r, r).trace());
      out.loss.push_back(0.5 * zz.topLeftCorner(r, r).diagonal().dot(d));
    }
    return out;
  }
  weight_decay += decoupled_weight_decay;  // without momentum the two decays are one step
  for (Index t = 0; t <= steps; ++t) {
    detail::throw_if_interrupted("exact_moments");
    if (t > 0) {
      if (weight_decay == 0.0) {
        s = op.transition(s, lr);
      } else {  // T(S) = a^2 S - a lr A(S) + lr^2 Q(S), a = 1 - lr lambda (theory/weight_decay.md, section 1)
        const double a = 1.0 - lr * weight_decay;
        s = (a * a) * s - (a * lr) * op.anticommutator(s) + (lr * lr) * op.quadratic(s);
      }
    }
    out.squared_norm.push_back(s.trace());
    out.loss.push_back(0.5 * s.diagonal().dot(d));
  }
  return out;
}

// ---------------------------------------------------------------------------
// The sampled operator (theory/montecarlo.md, eqs. 4-5)

void RadiusEstimateOptions::validate(const Geometry& g) const {
  check_common(g, lr, batch, confidence, "RadiusEstimateOptions", momentum, weight_decay, decoupled_weight_decay);
  require(blocks >= 2, "RadiusEstimateOptions::blocks", "must be >= 2, got " + std::to_string(blocks));
  require(tolerance > 0.0 && tolerance < 1.0, "RadiusEstimateOptions::tolerance",
          "must lie in (0, 1), got " + detail::fmt(tolerance));
}

namespace {

// A sampled batch as the rows Z_b (scaled by sqrt(weight)): H_b = Z_b^T Z_b.
struct SampledBatch {
  MatrixXd rows;
};

// The blocks (one batch, or one epoch of batches) of the sampled operator.
class SampledOperator {
 public:
  SampledOperator(const McSpace& g, const RadiusEstimateOptions& o)
      : r_(g.q),
        lr_(o.lr),
        a_(1.0 - o.lr * (o.weight_decay + (o.momentum.beta > 0.0 ? 0.0 : o.decoupled_weight_decay))),
        lam_(o.weight_decay),
        dec_(1.0 - o.lr * (o.momentum.beta > 0.0 ? o.decoupled_weight_decay : 0.0)),
        mo_(o.momentum),
        decay_(g.decay) {
    const Index c = g.c;
    BatchSampler sampler(o.schedule, g.n, o.batch, Rng::stream_seed(o.seed, 0, 3));
    steps_ = sampler.steps_per_block();
    blocks_.resize(static_cast<std::size_t>(o.blocks));
    std::vector<std::vector<Index>> first;  // the first block's batches
    for (std::size_t k = 0; k < blocks_.size(); ++k) {
      auto& block = blocks_[k];
      for (Index s = 0; s < steps_; ++s) {
        double divisor = 1.0;
        const std::vector<Index>& b = sampler.next(divisor);
        if (k == 0) first.push_back(b);
        else if (deterministic_) deterministic_ = b == first[static_cast<std::size_t>(s)];
        SampledBatch sb;
        sb.rows.resize(static_cast<Index>(b.size()) * c, r_);
        for (std::size_t q = 0; q < b.size(); ++q)
          sb.rows.middleRows(static_cast<Index>(q) * c, c) = g.rows.middleRows(b[q] * c, c) / std::sqrt(divisor);
        block.push_back(std::move(sb));
      }
    }
  }
  Index steps_per_block() const { return steps_; }
  Index blocks() const { return static_cast<Index>(blocks_.size()); }
  bool momentum() const { return mo_.beta > 0.0 || decay_.size() > 0; }
  /// Every block drew the same batches (e.g. B = n without replacement): T_hat = T exactly.
  bool deterministic() const { return deterministic_; }
  Index dimension() const { return momentum() ? 2 * r_ : r_; }  ///< of the second moment
  // Work matrices of one caller, reused from batch to batch and block to
  // block: the products below allocate nothing once the shapes are set
  // (small r: allocation, not flops, was the cost).
  struct Work {
    MatrixXd m, x, g, t, a, left, right, cur;
  };
  // P_k S P_k^T (transposed = false) or P_k^T S P_k, P_k = A_{b_last} ... A_{b_first},
  // for symmetric S (S H_b is taken as (H_b S)^T), in place.
  void apply_block(Index k, MatrixXd& s, bool transposed, Work& w) const {
    if (momentum()) return apply_momentum_block(k, s, transposed, w);
    const auto& block = blocks_[static_cast<std::size_t>(k)];
    for (std::size_t q = 0; q < block.size(); ++q) {
      const MatrixXd& zb = block[transposed ? block.size() - 1 - q : q].rows;
      // A_b S A_b with A_b = a I - lr H_b (a = 1 - lr lambda; a = 1 without weight decay).
      if (zb.rows() == 0) {  // an empty Bernoulli batch: only the decay
        if (a_ != 1.0) s *= a_ * a_;
        continue;
      }
      w.m.noalias() = zb * s;                 // Z_b S
      w.x.noalias() = zb.transpose() * w.m;   // H_b S
      w.g.noalias() = w.m * zb.transpose();   // Z_b S Z_b^T
      w.t.noalias() = w.g * zb;
      if (a_ != 1.0) s *= a_ * a_;
      s -= (a_ * lr_) * (w.x + w.x.transpose());
      s.noalias() += (lr_ * lr_) * (zb.transpose() * w.t);
    }
  }
  MatrixXd apply(const MatrixXd& s, bool transposed) const {
    MatrixXd out = MatrixXd::Zero(s.rows(), s.cols());
    Work w;
    for (Index k = 0; k < blocks(); ++k) {
      w.cur = s;
      apply_block(k, w.cur, transposed, w);
      out += w.cur;
    }
    return out / static_cast<double>(blocks());
  }

 private:
  // out = M_b A (transposed = false) or M_b^T A for a 2r-row A (theory/momentum.md, eq. 1-2):
  // M_b = [[dec I + lr e0 H_b, m01 I], [lr H_b, beta I]], H_b A_1 = Z_b^T (Z_b A_1), dec = 1 - lr mu
  // (AdamW's decoupled decay, theory/adaptive.md section 5; 1 otherwise).
  void momentum_rows(const MatrixXd& zb, const MatrixXd& a, bool transposed, MatrixXd& out, Work& w) const {
    const double b = mo_.beta, m01 = mo_.nesterov ? -b * b : -b, e0 = mo_.nesterov ? -(1.0 + b) : -1.0;
    const auto a1 = a.topRows(r_);
    const auto a2 = a.bottomRows(r_);
    out.resize(a.rows(), a.cols());
    // w.x = H_b A_1, or H_b (e0 A_1 + A_2) for the adjoint.
    if (zb.rows() == 0) {
      w.x.setZero(r_, a.cols());
    } else {
      if (transposed) {
        w.t = e0 * a1 + a2;
        w.m.noalias() = zb * w.t;
      } else {
        w.m.noalias() = zb * a1;
      }
      w.x.noalias() = zb.transpose() * w.m;
    }
    if (lam_ > 0.0) {  // (H_b + lambda) A_1, or (H_b + lambda)(e0 A_1 + A_2)
      if (transposed) w.x += lam_ * (e0 * a1 + a2);
      else w.x += lam_ * a1;
    }
    if (decay_.size() > 0) {  // (H_b + wd P^{-1}) ..., a diagonal decay (theory/adaptive.md, section 6)
      if (transposed) w.x += decay_.asDiagonal() * (e0 * a1 + a2);
      else w.x += decay_.asDiagonal() * a1;
    }
    if (!transposed) {
      out.topRows(r_) = dec_ * a1 + m01 * a2 + (lr_ * e0) * w.x;
      out.bottomRows(r_) = b * a2 + lr_ * w.x;
    } else {
      out.topRows(r_) = dec_ * a1 + lr_ * w.x;
      out.bottomRows(r_) = m01 * a1 + b * a2;
    }
  }
  // M Z M^T (or M^T Z M) per batch of the block, in the order the steps run.
  void apply_momentum_block(Index k, MatrixXd& s, bool transposed, Work& w) const {
    const auto& block = blocks_[static_cast<std::size_t>(k)];
    for (std::size_t q = 0; q < block.size(); ++q) {
      const MatrixXd& zb = block[transposed ? block.size() - 1 - q : q].rows;
      momentum_rows(zb, s, transposed, w.left, w);  // M Z
      w.a = w.left.transpose();
      momentum_rows(zb, w.a, transposed, w.right, w);  // M (M Z)^T = (M Z M^T)^T
      s = 0.5 * (w.right + w.right.transpose());
    }
  }

  Index r_;
  double lr_;
  double a_;    // 1 - lr lambda (weight decay)
  double lam_;  // lambda: with momentum H_b -> H_b + lambda I (theory/momentum.md, section 8)
  double dec_;  // 1 - lr mu: with momentum, AdamW's decoupled decay of the position step
  Momentum mo_;
  VectorXd decay_;  // per-coordinate L2 decay (momentum form), empty otherwise
  bool deterministic_ = true;
  Index steps_ = 1;
  std::vector<std::vector<SampledBatch>> blocks_;
};

// The sampled operator on packed symmetric coordinates (self-adjoint case),
// as an operator of the eigensolver module.
detail::FunctionOperator packed_operator(const SampledOperator& op, Index r, bool transposed = false) {
  return detail::FunctionOperator(packed_size(r), [&op, r, transposed](const double* x, double* y) {
    const MatrixXd s = unpack(Eigen::Map<const VectorXd>(x, packed_size(r)), r);
    Eigen::Map<VectorXd>(y, packed_size(r)) = pack(op.apply(s, transposed));
  });
}

double frob(const MatrixXd& a, const MatrixXd& b) { return (a.array() * b.array()).sum(); }

// The eigensolver settings of the sampled operator (theory/montecarlo.md, eq. 4).
SolverOptions sampled_solver_options(double tolerance) {
  SolverOptions o;
  o.method = Method::lanczos;  // each application costs `blocks` batch products: never dense by choice
  o.tolerance = tolerance;
  o.subspace_dimension = 20;
  return o;
}

}  // namespace

namespace {

// Memory of the sampled batches (an epoch holds n c rows) with per-batch
// overhead, and of the Lanczos basis.
double sampled_operator_bytes(const McSpace& g, const RadiusEstimateOptions& o) {
  const bool epochs = o.schedule == Schedule::reshuffle;
  const double rows_per_block = static_cast<double>(g.c) *
                                (epochs ? static_cast<double>(g.n) : static_cast<double>(o.batch) * 1.5 + 3.0);
  const double batches_per_block = epochs ? static_cast<double>((g.n + o.batch - 1) / o.batch) : 1.0;
  const double r = static_cast<double>(g.q);
  const Index dim = o.momentum.beta > 0.0 || g.momentum_form() ? 2 * g.q : g.q;  // of the second moment
  return static_cast<double>(o.blocks) * (8.0 * rows_per_block * r + 96.0 * batches_per_block) +
         8.0 * 44.0 * static_cast<double>(packed_size(dim)) + 8.0 * 8.0 * static_cast<double>(dim * dim);
}

// The top eigenvalue of the sampled operator with its right and left
// eigenvectors (equal in the self-adjoint case).
struct TopPair {
  double lambda = 0.0;
  MatrixXd right, left;
  Status status = Status::not_converged;
  Index matvecs = 0;
};

// The Perron eigenvalue of a positive map on symmetric dim x dim matrices
// (or of its adjoint) and its eigenvector, by Spectra's Arnoldi
// (GenEigsSolver, largest real part) on packed coordinates from the identity.
detail::Eigenpair arnoldi_top(const SampledOperator& op, Index dim, bool transposed, double tolerance) {
  detail::FunctionOperator packed = packed_operator(op, dim, transposed);
  const Index m = packed.rows();
  // Largest real part: the Perron root is real and >= every modulus, while
  // complex eigenvalues can tie with it in modulus (e.g. mu_i mu_j of the
  // mean dynamics' complex pairs), which would stall "largest magnitude".
  const detail::ComplexEigenpair a = detail::arnoldi_top(packed, pack(MatrixXd::Identity(dim, dim)),
                                                         std::min<Index>(m, 24), /*largest_real=*/true, 1000, tolerance);
  detail::Eigenpair out;
  out.report = a.report;
  if (!a.report.converged()) return out;
  const std::complex<double> lambda = a.value;
  if (std::abs(lambda.imag()) > 1e-8 * std::abs(lambda)) {  // not the Perron root: a positive map's is real
    out.report.status = Status::numerical_failure;
    return out;
  }
  out.value = lambda.real();
  out.vector = a.vector;
  return out;
}

TopPair sampled_top_pair(const SampledOperator& op, Index r, const RadiusEstimateOptions& o) {
  TopPair out;
  // Not self-adjoint (momentum; reshuffle, whose epoch map is a product):
  // right and left Perron vectors by Arnoldi.
  if (op.momentum() || o.schedule == Schedule::reshuffle) {
    const Index dim = op.dimension();
    const detail::Eigenpair pr = arnoldi_top(op, dim, false, o.tolerance);
    const detail::Eigenpair pl = arnoldi_top(op, dim, true, o.tolerance);
    out.status = combine(pr.report.status, pl.report.status);
    out.matvecs = pr.report.matvecs + pl.report.matvecs;
    out.lambda = pr.value;
    // The map and its adjoint share their Perron root: a disagreement means
    // one of the two applications (or solves) is wrong, not a number to report.
    if (out.status == Status::converged &&
        !(std::abs(pl.value - pr.value) <= 1e3 * std::max(o.tolerance, 1e-12) * std::abs(pr.value)))
      out.status = Status::numerical_failure;
    if (out.status == Status::converged) {
      out.right = unpack(pr.vector, dim);
      out.left = unpack(pl.vector, dim);
    }
    return out;
  }
  // Self-adjoint: Lanczos on packed coordinates (eq. 4).
  detail::FunctionOperator packed = packed_operator(op, r);
  const VectorXd start = pack(MatrixXd::Identity(r, r));
  const detail::Eigenpair e =
      detail::top_eigenpair(packed, start / start.norm(), sampled_solver_options(o.tolerance), 0.0, "rho_hat");
  out.status = e.report.status;
  out.matvecs = e.report.matvecs;
  out.lambda = e.value;
  if (e.report.converged()) out.right = out.left = unpack(e.vector, r);
  return out;
}

// Half-width of the delta-method interval of lambda (theory/montecarlo.md,
// eq. 5): lambda_hat = mean_k x_k, x_k = <U, P_k V P_k^T> / <U, V> to first
// order. The eigensolver's accuracy bounds it from below (a deterministic
// schedule, e.g. B = n, gives sd = 0).
double delta_half_width(const SampledOperator& op, const TopPair& top, const RadiusEstimateOptions& o) {
  const double floor = 10.0 * std::max(o.tolerance, 1e-13) * std::abs(top.lambda);
  if (op.deterministic()) return floor;  // no randomness: only the solver's accuracy
  const double uv = frob(top.left, top.right);
  // <U, V> = 0 only for a degenerate top eigenvalue: then no first-order expansion.
  if (!(std::abs(uv) > 1e-10 * top.left.norm() * top.right.norm())) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> x(static_cast<std::size_t>(o.blocks));
  SampledOperator::Work w;
  for (Index k = 0; k < o.blocks; ++k) {
    w.cur = top.right;
    op.apply_block(k, w.cur, false, w);
    x[static_cast<std::size_t>(k)] = frob(top.left, w.cur) / uv;
  }
  double mean = 0.0, ss = 0.0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(o.blocks);
  for (double v : x) ss += (v - mean) * (v - mean);
  const double k = static_cast<double>(o.blocks);
  return std::max(t_quantile(o.confidence, o.blocks) * std::sqrt(ss / (k - 1.0) / k), floor);
}

}  // namespace

namespace {

RadiusEstimate estimate_radius_in(const McSpace& g, const RadiusEstimateOptions& o) {
  const detail::Stopwatch watch;
  check_memory(sampled_operator_bytes(g, o), "the sampled batches of the operator estimate");
  const SampledOperator op(g, o);
  RadiusEstimate est;
  est.blocks = o.blocks;
  est.steps_per_block = op.steps_per_block();
  const TopPair top = sampled_top_pair(op, g.q, o);
  est.report.status = top.status;
  est.report.matvecs = top.matvecs;
  if (!est.converged()) {
    est.report.message = "the eigensolver on the sampled operator did not converge (" + to_string(est.status()) +
                  "); rho_hat is not to be trusted";
    est.report.seconds = watch.seconds();
    return est;
  }
  const double half = delta_half_width(op, top, o);
  if (!std::isfinite(half)) {
    est.report.status = Status::numerical_failure;
    est.report.message = "the top eigenvalue of the sampled operator is degenerate (left and right eigenvectors "
                  "orthogonal): the delta-method interval does not exist; rho_hat is not to be trusted";
    est.report.seconds = watch.seconds();
    return est;
  }
  const double inv = 1.0 / static_cast<double>(est.steps_per_block);  // per step: rho_epoch^(1/steps)
  est.rho_hat = std::pow(std::max(top.lambda, 0.0), inv);
  est.ci_low = std::pow(std::max(top.lambda - half, 0.0), inv);
  est.ci_high = std::pow(top.lambda + half, inv);
  est.report.message = est.steps_per_block > 1 ? "per-step rate rho_epoch^(1/" + std::to_string(est.steps_per_block) +
                                              ") of the sampled epoch operator"
                                        : "top eigenvalue of the sampled operator";
  est.report.seconds = watch.seconds();
  return est;
}

}  // namespace

RadiusEstimate estimate_radius(const Geometry& g, const RadiusEstimateOptions& o) {
  o.validate(g);
  return estimate_radius_in(reduced_space(g), o);
}

// ---------------------------------------------------------------------------
// Cross-check (theory/montecarlo.md, section 6)

namespace {

// The rho test: is the exact rho inside the sampled-operator interval widened
// to level 1 - significance/2 (the first half of the Bonferroni split)?
bool rho_inside(const CrossCheckReport& rep, const CrossCheckOptions& o) {
  const double z_scale = t_quantile(1.0 - 0.5 * o.significance, o.blocks) / t_quantile(o.confidence, o.blocks);
  const double rho_half = 0.5 * (rep.radius.ci_high - rep.radius.ci_low) * z_scale;
  const double rho_mid = 0.5 * (rep.radius.ci_high + rep.radius.ci_low);
  return std::abs(*rep.rho - rho_mid) <= rho_half + 1e-9 * *rep.rho;
}

// The moment tests: at how many light-tailed steps the exact E|delta_t|^2
// lies outside the Monte Carlo interval at level step_level (the other half
// of the split, shared by the T+1 steps), and how many steps were skipped as
// heavy-tailed (a trajectory carrying more than 5 % of the sum, or overflow).
struct MomentTests {
  double step_level = 0.0;
  Index outside = 0, heavy = 0;
};
MomentTests moments_outside(const CrossCheckReport& rep, const CrossCheckOptions& o) {
  MomentTests m;
  m.step_level = 1.0 - 0.5 * o.significance / static_cast<double>(o.steps + 1);
  const double scale = t_quantile(m.step_level, o.trajectories) / t_quantile(o.confidence, o.trajectories);
  for (Index t = 0; t <= o.steps; ++t) {
    const MomentEstimate& e = rep.simulation.squared_norm[static_cast<std::size_t>(t)];
    if (e.nonfinite > 0 || e.max_share > 0.05) {
      ++m.heavy;
      continue;
    }
    const double v = rep.exact.squared_norm[static_cast<std::size_t>(t)];
    if (std::abs(v - e.mean) > 0.5 * (e.ci_high - e.ci_low) * scale) ++m.outside;
  }
  return m;
}

// The verdict from the two tests (theory/montecarlo.md, section 6); above the
// threshold only the rho test counts (the Monte Carlo mean is heavy-tailed).
void decide(CrossCheckReport& rep, const CrossCheckOptions& o) {
  const bool rho_ok = rho_inside(rep, o);
  const MomentTests m = moments_outside(rep, o);
  const bool stable = *rep.rho <= 1.0;
  const std::string light = std::to_string(o.steps + 1 - m.heavy);
  if (!rho_ok) {
    rep.verdict = Verdict::disagree;
    rep.reason = "rho = " + detail::fmt(*rep.rho) + " lies outside the sampled-operator interval at level " +
                 detail::fmt(1.0 - 0.5 * o.significance) + " (rho_hat " + detail::fmt(rep.radius.rho_hat) + ")";
    return;
  }
  if (stable && m.outside > 0) {
    rep.verdict = Verdict::disagree;
    rep.reason = "the exact E|delta_t|^2 lies outside the Monte Carlo interval (Bonferroni level " +
                 detail::fmt(m.step_level) + " per step) at " + std::to_string(m.outside) + " of " + light + " steps";
    return;
  }
  rep.verdict = Verdict::agree;
  rep.reason = "rho inside the sampled-operator interval";
  rep.reason += stable ? "; exact moments inside the Monte Carlo intervals at all " + light + " light-tailed steps"
                       : std::string("; above the threshold the Monte Carlo mean is not used (heavy tails)");
  if (m.heavy > 0)
    rep.reason += "; " + std::to_string(m.heavy) +
                  " steps skipped: one trajectory carried > 5 % of the mean (heavy tail) or overflowed";
}

}  // namespace

namespace {

// What cross_check compares the Monte Carlo with at a closed-form scheme:
// fills rep.rho, rep.eta_star and rep.exact, returns the solves' status.
using ExactAnswers = std::function<Status(Sampling, CrossCheckReport&)>;

// The simulation's and the sampled operator's options of a run (its lr,
// momentum and decays as given), validated against g.
std::pair<SimulationOptions, RadiusEstimateOptions> split_options(const CrossCheckOptions& run, const Geometry& g) {
  SimulationOptions so;
  static_cast<MonteCarloRun&>(so) = run;
  so.steps = run.steps;
  so.trajectories = run.trajectories;
  so.progress = run.progress;
  so.validate(g);
  RadiusEstimateOptions ro;
  static_cast<MonteCarloRun&>(ro) = run;
  ro.blocks = run.blocks;
  ro.validate(g);
  return {so, ro};
}

// cross_check on `space`: the exact answers first (a solve that throws - bad
// input, memory - stops before the Monte Carlo; one that does not converge is
// reported after it, as inconclusive), then the simulation and the sampled
// operator, then the verdict (levels from o).
CrossCheckReport run_cross_check(const McSpace& space, const SimulationOptions& so, const RadiusEstimateOptions& ro,
                                 const CrossCheckOptions& o, const ExactAnswers& exact) {
  const detail::Stopwatch watch;
  CrossCheckReport rep;
  const std::optional<Sampling> sampling = closed_form(o.schedule);
  const Status exact_status = sampling ? exact(*sampling, rep) : Status::converged;
  rep.simulation = simulate(space, so);
  rep.radius = estimate_radius_in(space, ro);
  rep.report.status = rep.radius.status();
  if (!sampling) {
    rep.verdict = Verdict::inconclusive;
    rep.reason = "reshuffling has no closed-form operator: only the Monte Carlo estimates are reported (rho_hat " +
                 detail::fmt(rep.radius.rho_hat) + ")";
    rep.report.message = rep.radius.report.message;
    rep.report.seconds = watch.seconds();
    return rep;
  }
  rep.report.status = combine(rep.report.status, exact_status);
  if (rep.report.status != Status::converged) {
    rep.verdict = Verdict::inconclusive;
    rep.reason = "an eigensolver did not converge (" + to_string(rep.status()) + ")";
    rep.report.message = rep.reason;
    rep.report.seconds = watch.seconds();
    return rep;
  }
  decide(rep, o);
  rep.report.message = rep.reason;
  rep.report.seconds = watch.seconds();
  return rep;
}

}  // namespace

CrossCheckReport cross_check(const Geometry& g, const CrossCheckOptions& o) {
  check_fields(o, "CrossCheckOptions");  // the table's rules (cross_check_options.cpp)
  const auto [so, ro] = split_options(o, g);
  return run_cross_check(reduced_space(g), so, ro, o, [&](Sampling sampling, CrossCheckReport& rep) {
    const bool heavy = o.momentum.beta > 0.0;
    // Without momentum a decoupled decay is L2 decay; with it, the adamw map (theory/adaptive.md, section 5).
    const double mu = heavy ? o.decoupled_weight_decay : 0.0;
    const double lambda = o.weight_decay + (heavy ? 0.0 : o.decoupled_weight_decay);
    const bool decay = lambda > 0.0;
    const RadiusResult exact =
        heavy   ? detail::timed([&] {
                  return detail::decayed_momentum_radius(g, o.lr, o.batch, sampling, o.momentum, o.weight_decay, mu,
                                                         {}, "cross_check");
                })
        : decay ? weight_decay_spectral_radius(g, o.lr, o.batch, sampling, lambda)
                : spectral_radius(g, o.lr, o.batch, sampling);
    Status thr_status;
    if (heavy) {
      const MomentumThresholdResult thr = detail::decayed_momentum_threshold(g, o.batch, sampling, o.momentum,
                                                                             o.weight_decay, mu, {}, 0, "cross_check");
      rep.eta_star = thr.eta_star;
      thr_status = thr.status();
    } else {
      const ThresholdResult thr = decay ? weight_decay_threshold(g, o.batch, sampling, lambda)
                                        : stability_threshold(g, o.batch, sampling);
      rep.eta_star = thr.eta_star;
      thr_status = thr.status();
    }
    rep.rho = exact.rho;
    rep.exact = exact_moments(g, o.lr, o.batch, sampling, o.steps, VectorXd(), o.momentum, o.weight_decay,
                              o.decoupled_weight_decay);
    return combine(exact.status(), thr_status);
  });
}

// ---------------------------------------------------------------------------
// Adam's and RMSProp's own L2 decay (theory/adaptive.md, section 6; theory/montecarlo.md, section 8)

namespace {

// E|phi_t|^2 and E[1/2 phi_t^T H~ phi_t] of heavy-ball at lr with mean G = H~ + D (D = wd P^{-1}) in
// phi = P^{1/2} theta, from Z_0 = [[I/p, 0], [0, 0]], by Z' = Mbar Z Mbar^T + lr^2 [[N, -N], [-N, N]]
// with Mbar = [[I - lr G, -beta I], [lr G, beta I]] and N = E[E_xi Z_11 E_xi], E_xi = H~_xi - H~:
// N = (alpha - 1) H~ Z_11 H~ + beta_s (1/n) sum_i h~_i Z_11 h~_i. Dense in the parameter space
// (an independent route from the radius's eigenbasis of G).
ExactMoments l2_exact_moments(const MatrixXd& rows, Index n, Index c, const VectorXd& decay, double lr, double beta,
                              SamplingFactors f, Index steps) {
  const Index p = rows.cols();
  // H~, G, Mbar, Z, Z_11, the noise and the products' temporaries: about 30 p^2 doubles.
  check_memory(8.0 * 30.0 * static_cast<double>(p) * static_cast<double>(p),
               "adam_l2_cross_check: the exact second moments on the whole parameter space (p = " + std::to_string(p) +
                   ")");
  const MatrixXd h = rows.transpose() * rows / static_cast<double>(n);
  MatrixXd g = h;
  g.diagonal() += decay;
  MatrixXd mbar = MatrixXd::Zero(2 * p, 2 * p);
  mbar.topLeftCorner(p, p) = MatrixXd::Identity(p, p) - lr * g;
  mbar.topRightCorner(p, p) = -beta * MatrixXd::Identity(p, p);
  mbar.bottomLeftCorner(p, p) = lr * g;
  mbar.bottomRightCorner(p, p) = beta * MatrixXd::Identity(p, p);
  MatrixXd z = MatrixXd::Zero(2 * p, 2 * p);
  z.topLeftCorner(p, p) = MatrixXd::Identity(p, p) / static_cast<double>(p);
  ExactMoments out;
  for (Index t = 0; t <= steps; ++t) {
    detail::throw_if_interrupted("adam_l2_cross_check");
    if (t > 0) {
      const MatrixXd z11 = z.topLeftCorner(p, p);
      MatrixXd noise = (f.alpha - 1.0) * h * z11 * h;
      if (f.beta != 0.0)
        for (Index i = 0; i < n; ++i) {
          const auto zi = rows.middleRows(i * c, c);
          noise.noalias() += (f.beta / static_cast<double>(n)) * (zi.transpose() * (zi * z11 * zi.transpose()) * zi);
        }
      z = (mbar * z * mbar.transpose()).eval();
      z.topLeftCorner(p, p) += (lr * lr) * noise;
      z.topRightCorner(p, p) -= (lr * lr) * noise;
      z.bottomLeftCorner(p, p) -= (lr * lr) * noise;
      z.bottomRightCorner(p, p) += (lr * lr) * noise;
    }
    out.squared_norm.push_back(z.topLeftCorner(p, p).trace());
    out.loss.push_back(0.5 * (h.array() * z.topLeftCorner(p, p).array()).sum());
  }
  return out;
}

}  // namespace

CrossCheckReport adam_l2_cross_check(const Eigen::Ref<const MatrixXd>& jacobian, Index outputs,
                                     const Eigen::Ref<const VectorXd>& preconditioner, double beta1,
                                     const CrossCheckOptions& o) {
  const char* where = "adam_l2_cross_check";
  check_fields(o, "CrossCheckOptions");
  require(o.momentum.beta == 0.0 && !o.momentum.nesterov, where,
          "options.momentum must be 0: Adam's beta1 is its own argument (heavy-ball at lr (1 - beta1))");
  require(o.decoupled_weight_decay == 0.0, where,
          "options.decoupled_weight_decay must be 0: AdamW's decoupled decay is cross_check's (theory/adaptive.md, "
          "section 5); options.weight_decay is Adam's or RMSProp's own L2 decay here");
  require(std::isfinite(beta1) && beta1 >= 0.0 && beta1 < 1.0, where,
          "beta1 must be in [0, 1), got " + detail::fmt(beta1));
  require(std::isfinite(o.weight_decay) && o.weight_decay > 0.0, where,
          "options.weight_decay (the L2 decay) must be finite and > 0, got " + detail::fmt(o.weight_decay) +
              " (without decay: cross_check on the preconditioned geometry with Adam's heavy-ball lr)");
  require(std::isfinite(o.lr) && o.lr > 0.0, where, "options.lr must be finite and > 0, got " + detail::fmt(o.lr));
  if (outputs > 0 && jacobian.rows() % outputs == 0) check_batch(o.batch, jacobian.rows() / outputs, where);
  const MatrixXd jt = precondition_jacobian(jacobian, preconditioner);  // checks P
  const Geometry g = Geometry::from_jacobian(jt, outputs);             // checks J; n for the batch checks
  // The run at the heavy-ball lr, with the decay in the space (phi = P^{1/2} theta, theory/adaptive.md eq. 3).
  CrossCheckOptions hb = o;
  hb.lr = adam_heavy_ball_lr(o.lr, beta1);
  hb.momentum = Momentum{beta1, false};
  hb.weight_decay = 0.0;
  const auto [so, ro] = split_options(hb, g);
  const McSpace space{jt, g.samples(), g.outputs(), jt.cols(), VectorXd(),
                      o.weight_decay * preconditioner.cwiseInverse()};
  return run_cross_check(space, so, ro, o, [&](Sampling sampling, CrossCheckReport& rep) {
    const RadiusResult exact =
        adam_l2_spectral_radius(jacobian, outputs, preconditioner, o.lr, o.batch, sampling, beta1, o.weight_decay);
    const MomentumThresholdResult thr =
        adam_l2_threshold(jacobian, outputs, preconditioner, o.batch, sampling, beta1, o.weight_decay);
    rep.rho = exact.rho;
    rep.eta_star = thr.eta_star;  // the optimizer's lr
    rep.exact = l2_exact_moments(jt, g.samples(), g.outputs(), space.decay, hb.lr, beta1,
                                 sampling_factors(sampling, g.samples(), o.batch), o.steps);
    return combine(exact.status(), thr.status());
  });
}

}  // namespace sgdstab
