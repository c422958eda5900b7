// eta* of momentum SGD: the mean dynamics' kernel, kappa_0 of each noise
// class and the search for kappa = 1 (theory/momentum.md, sections 5-7).
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/weight_decay.hpp"
#include "solvers/eigensolve.hpp"
#include "solvers/family.hpp"
#include "solvers/momentum_levels.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::mean_limit;
using detail::noise_level;

namespace detail {

double mean_limit(const Momentum& mo, double lambda_max, double decoupled) {
  // Decoupled decay (heavy-ball only): m = [[1 - lr (d + mu), -beta], [lr d, beta]]
  // is stable iff p(-1) = 2 + 2 beta - lr (d + (1 + beta) mu) > 0 and |det| =
  // beta |1 - lr mu| < 1; the first binds (theory/adaptive.md, section 5).
  if (decoupled > 0.0) return 2.0 * (1.0 + mo.beta) / (lambda_max + (1.0 + mo.beta) * decoupled);
  return (mo.nesterov ? 2.0 * (1.0 + mo.beta) / (1.0 + 2.0 * mo.beta) : 2.0 * (1.0 + mo.beta)) / lambda_max;
}

double noise_level(Sampling sampling, Index n, Index batch) { return sampling_factors(sampling, n, batch).beta; }

}  // namespace detail

namespace {

void unpack_into_full(const double* x, Index r, MatrixXd& s) {
  s = unpack(Eigen::Map<const VectorXd>(x, packed_size(r)), r);
}


// (m01, e0) of theory/momentum.md, eq. 2.
std::pair<double, double> momentum_coefficients(const Momentum& mo) {
  return {mo.nesterov ? -mo.beta * mo.beta : -mo.beta, mo.nesterov ? -(1.0 + mo.beta) : -1.0};
}

// The kernel G_eta of eq. 8: G_ij = eta^2 [S_ij]_11 with S_ij - m_i S_ij m_j^T = e e^T,
// m_i the 2 x 2 mean transition on the i-th eigen-direction, and its
// derivative in eta (differentiating the 4 x 4 system: s' = -A^{-1} A' s).
// decoupled mu (heavy-ball only): m_i's top-left entry loses eta mu
// (theory/adaptive.md, section 5). False if an entry of G is not > 0.
bool mean_kernel(const Eigen::VectorXd& d, double eta, const Momentum& mo, double decoupled, MatrixXd& g,
                 MatrixXd* dg = nullptr) {
  // Plain variables, not a structured binding: C++17 lambdas cannot capture those.
  const std::pair<double, double> coefficients = momentum_coefficients(mo);
  const double m01 = coefficients.first, e0 = coefficients.second;
  const Index r = d.size();
  g.resize(r, r);
  if (dg) dg->resize(r, r);
  const Eigen::Vector4d rhs(e0 * e0, e0, e0, 1.0);  // vec(e e^T), column-major
  auto m = [&](Index i) {
    Eigen::Matrix2d out;
    out << 1.0 + eta * (e0 * d(i) - decoupled), m01, eta * d(i), mo.beta;
    return out;
  };
  auto dm = [&](Index i) {  // d m_i / d eta
    Eigen::Matrix2d out;
    out << e0 * d(i) - decoupled, 0.0, d(i), 0.0;
    return out;
  };
  bool positive = true;
  for (Index j = 0; j < r; ++j) {
    const Eigen::Matrix2d mj = m(j), dmj = dm(j);
    for (Index i = j; i < r; ++i) {
      const Eigen::Matrix2d mi = m(i), dmi = dm(i);
      Eigen::Matrix4d a = Eigen::Matrix4d::Identity(), da = Eigen::Matrix4d::Zero();
      for (int p = 0; p < 2; ++p)
        for (int q = 0; q < 2; ++q) {
          a.block<2, 2>(2 * p, 2 * q) -= mj(p, q) * mi;  // I - kron(m_j, m_i)
          da.block<2, 2>(2 * p, 2 * q) -= dmj(p, q) * mi + mj(p, q) * dmi;
        }
      const Eigen::PartialPivLU<Eigen::Matrix4d> lu(a);
      const Eigen::Vector4d sol = lu.solve(rhs);
      const double v = eta * eta * sol(0);
      g(i, j) = g(j, i) = v;
      if (dg) {
        const Eigen::Vector4d dsol = -lu.solve(da * sol);
        (*dg)(i, j) = (*dg)(j, i) = 2.0 * eta * sol(0) + eta * eta * dsol(0);
      }
      if (!(v > 0) || !std::isfinite(v)) positive = false;
    }
  }
  return positive;
}

}  // namespace

namespace {

// kappa_0(eta) of one noise class (theory/momentum.md, section 5): every
// closed-form scheme has C = b(B) C_0 with C_0(X) = D(X) - H X H (without
// and with replacement, where a = 1 - b) or C_0 = D (Bernoulli, a = 1), so
// kappa(eta; B) = b(B) kappa_0(eta): one function serves every batch size of
// a class. Evaluations are kept (eta, kappa_0, slope) and reused by every
// level 1 / b searched on it.
class KappaFunction {
 public:
  // weight_decay lambda (theory/momentum.md, section 8): the mean kernel sees
  // d + lambda, C_0 (H_xi - H) is unchanged.
  // decoupled mu (theory/adaptive.md, section 5): only the mean kernel sees it.
  // mean (theory/adaptive.md, section 6): a mean dynamics that does not
  // commute with H (Adam's or RMSProp's L2 decay), on the whole parameter
  // space: K_eta works on q x q matrices in the mean's eigenbasis U, the
  // noise reaching them through W = U^T V; weight_decay is then unused.
  KappaFunction(const Geometry& g, bool bernoulli, const Momentum& mo, const SolverOptions& options,
                double weight_decay, double decoupled, const detail::MeanBasis* mean = nullptr)
      : d_(g.hessian_eigenvalues()),
        d_mean_(mean ? mean->eigenvalues : VectorXd(g.hessian_eigenvalues().array() + weight_decay)),
        d_op_(g, 1, Sampling::with_replacement),  // with replacement at B = 1: Q(X) = D(X) exactly
        bernoulli_(bernoulli),
        mo_(mo),
        decoupled_(decoupled),
        options_(options),
        q_(d_mean_.size()),
        m_(packed_size(q_)) {
    if (mean) basis_ = mean->basis;
    start_ = pack(MatrixXd::Identity(q_, q_)) / std::sqrt(static_cast<double>(q_));
    fixed_ = d_op_.workspace_bytes() + 8.0 * 6.0 * static_cast<double>(q_) * static_cast<double>(q_);
  }

  struct Evaluation {
    double eta = 0.0, kappa0 = 0.0;
    double error = 0.0;  // kappa_0 <= true kappa_0 <= kappa_0 + error (a Ritz value and its bound)
    double slope = 0.0;  // d log kappa_0 / d log eta
    bool loose = false;  // computed at a looser tolerance than the options'
  };

  // kappa_0(eta) to relative accuracy `tolerance` (>= the options'), or NaN
  // after a failure (status() and failure() say which).
  double operator()(double eta, double tolerance) {
    const bool loose = tolerance > options_.tolerance;
    for (std::size_t k = 0; k < cache_.size(); ++k)
      if (cache_[k].eta == eta) {
        if (loose || !cache_[k].loose) return cache_[k].kappa0;
        cache_.erase(cache_.begin() + static_cast<std::ptrdiff_t>(k));  // refined below
        break;
      }
    MatrixXd g, dg;
    if (!mean_kernel(d_mean_, eta, mo_, decoupled_, g, &dg)) {
      failed_ = Status::numerical_failure;
      failure_ = "the kernel G of the mean dynamics has an entry <= 0 at lr = " + detail::fmt(eta) +
                 " (theory/momentum.md, section 5): the symmetric form does not apply";
      return std::numeric_limits<double>::quiet_NaN();
    }
    w_ = g.cwiseSqrt();
    // R_eta = W o C_0(W o .) is indefinite for C_0 = D - H . H: it is >= -W o (H X H) o W,
    // so sigma = max_ij G_ij d_i d_j makes R_eta + sigma I positive semidefinite,
    // and the eigensolver's relative accuracy is taken on kappa_0 + sigma. In
    // a mean basis the negative part is |A^{1/2} (sqrt G o Y) A^{1/2}|^2 with
    // A = W diag(d) W^T, at most b^T G b |Y|^2 with b = diag(A) (Cauchy-Schwarz
    // term by term; theory/adaptive.md section 6), and at most max G d_1^2 |Y|^2.
    sigma_ = 0.0;
    if (!bernoulli_ && basis_.size() == 0) {
      sigma_ = (g.array() * (d_ * d_.transpose()).array()).maxCoeff();
    } else if (!bernoulli_) {
      const VectorXd b = basis_.array().square().matrix() * d_;
      sigma_ = std::min(g.maxCoeff() * d_(0) * d_(0), b.dot(g * b));
    }
    const auto apply = [this](const double* x, double* out) {
      unpack_into_full(x, q_, s_);
      y_ = s_.cwiseProduct(w_);
      if (basis_.size() > 0) {
        reduced_.noalias() = basis_.transpose() * y_ * basis_;  // the noise sees V^T X V (r x r)
        d_op_.quadratic_into(reduced_, reduced_out_);
        if (!bernoulli_) reduced_out_ -= d_.asDiagonal() * reduced_ * d_.asDiagonal();
        cy_.noalias() = basis_ * reduced_out_ * basis_.transpose();  // and lives on span V
      } else {
        d_op_.quadratic_into(y_, cy_);
        if (!bernoulli_) cy_ -= d_.asDiagonal() * y_ * d_.asDiagonal();
      }
      Eigen::Map<VectorXd>(out, m_) = pack(cy_.cwiseProduct(w_)) + sigma_ * Eigen::Map<const VectorXd>(x, m_);
    };
    // The shared-subspace solver (family.hpp) on the single member s = 1:
    // thick-restart Lanczos with full reorthogonalization and an a
    // posteriori error bound, or dense for small m; warm-started from the
    // previous evaluation's vector.
    SolverOptions o = options_;
    o.tolerance = tolerance;
    const detail::FamilyResult fr =
        detail::family_top(VectorXd::Zero(m_), apply, {1.0}, start_, o, fixed_, "momentum threshold", true);
    const detail::FamilyMember& top = fr.members.front();
    applications_ += fr.matvecs;
    ++evaluations_;
    if (!top.converged()) {
      failed_ = top.status;
      failure_ = "kappa at lr = " + detail::fmt(eta) + ": " + top.message;
      return std::numeric_limits<double>::quiet_NaN();
    }
    method_ = top.method;
    residual_ = std::max(residual_, top.residual / std::max(top.value, 1e-300));
    Evaluation e{eta, top.value - sigma_, top.error, 0.0, loose};
    if (top.vector.size() == m_) {
      start_ = top.vector;
      // Hellmann-Feynman: d log kappa / d log eta = eta sum_ij v_ij^2 G'_ij / G_ij / kappa_0
      // (eq. 9 with W' / W = G' / (2 G); no application of C).
      const MatrixXd v = unpack(top.vector, q_);
      e.slope = eta * (v.array().square() * (dg.array() / g.array())).sum() / v.squaredNorm();
    }
    cache_.push_back(e);
    return e.kappa0;
  }

  const std::vector<Evaluation>& cache() const { return cache_; }
  Status status() const { return failed_; }
  const std::string& failure() const { return failure_; }
  Index applications() const { return applications_; }
  Index evaluations() const { return evaluations_; }
  Method method() const { return method_; }
  double residual() const { return residual_; }
  const Momentum& momentum() const { return mo_; }

 private:
  const VectorXd& d_;
  VectorXd d_mean_;  // d + lambda: the mean dynamics' eigenvalues
  SecondMomentOperator d_op_;
  bool bernoulli_;
  Momentum mo_;
  double decoupled_;
  SolverOptions options_;
  Index q_, m_;     // order of the mean's kernel (r, or p in a mean basis), packed size
  MatrixXd basis_;  // W = U^T V (p x r) in a mean basis, else empty
  VectorXd start_;
  double fixed_ = 0.0, sigma_ = 0.0;
  MatrixXd w_, s_, y_, cy_;
  MatrixXd reduced_, reduced_out_;  // r x r, in a mean basis
  std::vector<Evaluation> cache_;
  Status failed_ = Status::converged;
  std::string failure_;
  Index applications_ = 0, evaluations_ = 0;
  Method method_ = Method::lanczos;
  double residual_ = 0.0;
};

// The first crossing of b kappa_0(eta) = 1 in (0, eta_mean) (theory/momentum.md,
// section 5): the bracket from the evaluations kept so far, then a
// safeguarded Newton iteration on log kappa against log eta.
class LevelSearch {
 public:
  LevelSearch(KappaFunction& kappa0, double b, const SolverOptions& options, double eta_mean)
      : kappa0_(kappa0), b_(b), tol_(options.tolerance), loose_tol_(std::max(options.tolerance, 1e-4)),
        eta_mean_(eta_mean), hi_(eta_mean) {}

  // Fills res: eta* with its certified bracket, the evaluations, the report
  // and, with scan_points > 0, the stable intervals found by the scan.
  void run(Index scan_points, MomentumThresholdResult& res) {
    const Index applications0 = kappa0_.applications(), evaluations0 = kappa0_.evaluations();
    if (scan_points > 0)  // the grid first; its stable stretches are reported below
      for (Index k = 1; k <= scan_points && kappa0_.status() == Status::converged; ++k)
        kappa(eta_mean_ * static_cast<double>(k) / static_cast<double>(scan_points + 1), tol_);
    double eta = bracket_from_known();
    if (bracketed()) eta = -1.0;  // already bracketed
    newton(eta);
    for (const KappaFunction::Evaluation& e : kappa0_.cache()) res.evaluations.push_back({e.eta, b_ * e.kappa0});
    std::sort(res.evaluations.begin(), res.evaluations.end());
    res.report.matvecs = kappa0_.applications() - applications0;
    res.report.iterations = kappa0_.evaluations() - evaluations0;
    res.report.method = kappa0_.method();
    res.report.residual = kappa0_.residual();
    if (finish(res)) stable_intervals(scan_points, res);
  }

 private:
  // b kappa_0(eta) at accuracy t; records the evaluation's slope, error and looseness.
  double kappa(double eta, double t) {
    const double k0 = kappa0_(eta, t);
    for (const KappaFunction::Evaluation& e : kappa0_.cache())
      if (e.eta == eta) slope_ = e.slope, error_ = b_ * e.error, was_loose_ = e.loose;
    return b_ * k0;
  }

  // +1: unstable, -1: stable, 0: a loose value too close to 1 to say. A
  // Ritz value is a lower bound on kappa, so kv >= 1 is always unstable; the
  // error bound of an unconverged (loose) solve can be optimistic, so a
  // loose value below 1 counts as stable only 1 % away from it (100 times
  // the loose tolerance) and inside its bound.
  static int side(double kv, double err, bool loose) {
    if (kv >= 1.0) return 1;
    return !loose || (kv < 0.99 && kv + err < 1.0) ? -1 : 0;
  }

  bool bracketed() const { return lo_ > 0 && std::isfinite(khi_) && (hi_ - lo_) <= tol_ * hi_; }

  // The bracket [lo, hi] of the first crossing from what is known: kappa(lo)
  // < 1 <= kappa(hi); hi = eta_mean (kappa unbounded there) until an unstable
  // point is seen. Returns the first point to evaluate: Newton's step from
  // the known evaluation closest to the level, else the bracket's middle.
  double bracket_from_known() {
    std::vector<KappaFunction::Evaluation> known = kappa0_.cache();
    std::sort(known.begin(), known.end(), [](const auto& x, const auto& y) { return x.eta < y.eta; });
    for (const KappaFunction::Evaluation& e : known) {
      const int sd = side(b_ * e.kappa0, b_ * e.error, e.loose);
      if (sd < 0) {
        lo_ = e.eta;
        lo_loose_ = e.loose;
      } else {
        if (sd > 0) hi_ = e.eta, khi_ = b_ * e.kappa0;
        break;
      }
    }
    const KappaFunction::Evaluation* nearest = nullptr;
    for (const KappaFunction::Evaluation& e : known)
      if ((e.eta == lo_ || (e.eta == hi_ && std::isfinite(khi_))) &&
          (!nearest || std::abs(std::log(b_ * e.kappa0)) < std::abs(std::log(b_ * nearest->kappa0))))
        nearest = &e;
    double eta = 0.5 * eta_mean_;
    if (nearest) gap_ = std::abs(std::log(b_ * nearest->kappa0));
    if (nearest && nearest->slope > 0) eta = nearest->eta * std::exp(-std::log(b_ * nearest->kappa0) / nearest->slope);
    else if (lo_ > 0) eta = std::isfinite(khi_) ? std::sqrt(lo_ * hi_) : 0.5 * (lo_ + eta_mean_);
    else if (std::isfinite(khi_)) eta = 0.5 * hi_;
    const double upper = std::isfinite(khi_) ? hi_ : eta_mean_;
    if (!(eta > lo_ && eta < upper)) eta = lo_ > 0 ? std::sqrt(lo_ * upper) : 0.5 * upper;
    return eta;
  }

  // The safeguarded Newton iteration from eta (none when eta <= 0). Far from
  // the root (|log kappa| > 0.02) kappa is evaluated to 1e-4 only: Newton's
  // step needs no more, and the warm start carries the vector on. Such a
  // loose value classifies a point only where that is safe (side()).
  void newton(double eta) {
    for (int it = 0; it < 100 && eta > 0 && kappa0_.status() == Status::converged; ++it) {
      const double kv = kappa(eta, gap_ > 0.02 ? loose_tol_ : tol_);
      if (!std::isfinite(kv)) break;
      gap_ = std::abs(std::log(kv));
      const int sd = side(kv, error_, was_loose_);
      if (sd < 0 && eta >= lo_) lo_ = eta, lo_loose_ = was_loose_;
      else if (sd > 0 && (eta < hi_ || !std::isfinite(khi_))) hi_ = eta, khi_ = kv;
      double next = eta * std::exp(slope_ > 0 ? -std::log(kv) / slope_ : 0.0);
      if (!was_loose_ && std::abs(std::log(kv)) <= 0.5 * tol_) {
        if (bracketed()) break;
        // Converged on one side: certify the other with a point just past the root.
        next = kv < 1.0 ? eta * (1.0 + tol_) : eta * (1.0 - tol_);
      }
      // Keep inside the bracket: bisect (geometrically) when Newton leaves it;
      // if it leaves below a loosely known lo, lo itself is the root's
      // neighbour: evaluate it at full accuracy instead.
      const double upper = std::isfinite(khi_) ? hi_ : eta_mean_;
      if (next <= lo_ && lo_loose_ && eta != lo_) next = lo_;
      else if (!(next > lo_ && next < upper)) next = lo_ > 0 ? std::sqrt(lo_ * upper) : 0.5 * std::min(eta, upper);
      if (!std::isfinite(khi_) && next >= eta_mean_ * (1.0 - tol_)) {
        mean_limited_ = true;
        break;
      }
      if (bracketed()) break;
      eta = next;
    }
  }

  // eta* and its bracket into res, with the status; false when there is no eta*.
  bool finish(MomentumThresholdResult& res) const {
    if (kappa0_.status() != Status::converged) {
      res.report.status = kappa0_.status();
      res.report.message = kappa0_.failure();
      res.eta_star = lo_;
      return false;
    }
    if (!(lo_ > 0)) {
      res.report.status = Status::not_converged;
      res.report.message = "no learning rate with kappa < 1 was found below eta_mean = " + detail::fmt(eta_mean_);
      return false;
    }
    if (mean_limited_ || !std::isfinite(khi_)) {
      // kappa < 1 up to within the tolerance of eta_mean: the mean dynamics limit the step.
      res.eta_star = res.eta_high = eta_mean_;
      res.eta_low = lo_;
    } else {
      // The root from the bracket's ends (log-linear interpolation).
      double klo = 0.0;
      for (const auto& e : res.evaluations)
        if (e.first == lo_) klo = e.second;
      const double la = std::log(lo_), lb = std::log(hi_), fa = std::log(klo), fb = std::log(khi_);
      res.eta_star = (fb - fa) != 0.0 ? std::exp(lb - fb * (lb - la) / (fb - fa)) : std::sqrt(lo_ * hi_);
      res.eta_star = std::clamp(res.eta_star, lo_, hi_);
      res.eta_low = lo_;
      res.eta_high = hi_;
    }
    res.report.error_bound = (res.eta_high - res.eta_low) / res.eta_low;
    const bool ok = res.report.error_bound <= std::max(10.0 * tol_, 1e-12) || mean_limited_;
    res.report.status = ok ? Status::converged : Status::not_converged;
    res.report.message = ok ? "converged (" + std::to_string(res.report.iterations) + " new evaluations of kappa)"
                            : "the bracket [" + detail::fmt(res.eta_low) + ", " + detail::fmt(res.eta_high) +
                                  "] did not shrink to the tolerance";
    return true;
  }

  // The stable set: (0, eta*), then, from the scan, any stretch above eta* where kappa < 1 again.
  void stable_intervals(Index scan_points, MomentumThresholdResult& res) const {
    res.stable_intervals = {{0.0, res.eta_star}};
    if (scan_points == 0) return;
    double open = -1.0;
    for (const auto& e : res.evaluations) {
      if (e.first <= res.eta_high) continue;
      if (e.second < 1.0 && open < 0) open = e.first;
      if (e.second >= 1.0 && open > 0) res.stable_intervals.push_back({open, e.first}), open = -1.0;
    }
    if (open > 0) res.stable_intervals.push_back({open, eta_mean_});
    if (res.stable_intervals.size() > 1)
      res.report.message += "; the stable set is not an interval: see stable_intervals (grid resolution)";
  }

  KappaFunction& kappa0_;
  const double b_, tol_, loose_tol_, eta_mean_;
  double slope_ = 0.0, error_ = 0.0, gap_ = std::numeric_limits<double>::infinity();
  bool was_loose_ = false;
  double lo_ = 0.0, hi_, khi_ = std::numeric_limits<double>::infinity();
  bool lo_loose_ = false;  // lo classified by a loose value (its bounds), not a full one
  bool mean_limited_ = false;
};

// eta* at level b into res (b = 0: full batch, no kappa needed).
void solve_level(KappaFunction* kappa_fn, double b, const SolverOptions& options, Index scan_points,
                 MomentumThresholdResult& res) {
  if (b == 0.0) {  // C = 0 at full batch: the mean's limit is the answer
    res.eta_star = res.eta_low = res.eta_high = res.eta_mean;
    res.stable_intervals = {{0.0, res.eta_mean}};
    res.report.status = Status::converged;
    res.report.error_bound = 0.0;
    res.report.method = Method::dense;
    res.report.message = "converged (full batch: the limit of the mean dynamics, theory/momentum.md eq. 5-6)";
    return;
  }
  LevelSearch(*kappa_fn, b, options, res.eta_mean).run(scan_points, res);
}

MomentumThresholdResult threshold_result(const Geometry& g, Index batch, Sampling sampling, const Momentum& mo,
                                         double weight_decay, double decoupled,
                                         const detail::MeanBasis* mean = nullptr) {
  MomentumThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.momentum = mo;
  res.weight_decay = weight_decay;
  res.eta_mean = mean_limit(mo, mean ? mean->eigenvalues.maxCoeff() : g.lambda_max() + weight_decay, decoupled);
  return res;
}

bool bernoulli_class(Sampling s) { return s == Sampling::bernoulli; }

void check_weight_decay_finite(double lambda, const char* where) {
  detail::require(std::isfinite(lambda) && lambda >= 0.0, where,
                  "weight decay must be finite and >= 0, got " + detail::fmt(lambda));
}

void check_decoupled(double mu, const Momentum& mo, const char* where) {
  detail::require(std::isfinite(mu) && mu >= 0.0, where,
                  "decoupled weight decay must be finite and >= 0, got " + detail::fmt(mu));
  detail::require(mu == 0.0 || !mo.nesterov, where,
                  "decoupled weight decay is defined for heavy-ball momentum (AdamW), not Nesterov");
}

}  // namespace

namespace {

MomentumThresholdResult momentum_threshold_untimed(const Geometry& geometry, Index batch, Sampling sampling, Momentum momentum,
                                           const SolverOptions& options, Index scan_points, double weight_decay,
                                           const char* where, double decoupled = 0.0,
                                           const detail::MeanBasis* mean = nullptr) {
  options.validate();
  momentum.validate();
  detail::require(scan_points >= 0, where, "scan_points must be >= 0, got " + std::to_string(scan_points));
  check_weight_decay_finite(weight_decay, where);
  check_decoupled(decoupled, momentum, where);
  check_batch(batch, geometry.samples(), where);
  MomentumThresholdResult res = threshold_result(geometry, batch, sampling, momentum, weight_decay, decoupled, mean);
  const double b = noise_level(sampling, geometry.samples(), batch);
  if (b == 0.0) {
    solve_level(nullptr, 0.0, options, 0, res);
    return res;
  }
  KappaFunction kappa0(geometry, bernoulli_class(sampling), momentum, options, weight_decay, decoupled, mean);
  solve_level(&kappa0, b, options, scan_points, res);
  return res;
}

}  // namespace

MomentumThresholdResult momentum_threshold(const Geometry& geometry, Index batch, Sampling sampling, Momentum momentum,
                                           const SolverOptions& options, Index scan_points) {
  return detail::timed([&] {
    return momentum_threshold_untimed(geometry, batch, sampling, momentum, options, scan_points, 0.0, "momentum_threshold");
  });
}

MomentumThresholdResult weight_decay_momentum_threshold(const Geometry& geometry, Index batch, Sampling sampling,
                                                        Momentum momentum, double weight_decay,
                                                        const SolverOptions& options, Index scan_points) {
  return detail::timed([&] {
    return momentum_threshold_untimed(geometry, batch, sampling, momentum, options, scan_points, weight_decay,
                                      "weight_decay_momentum_threshold");
  });
}

MomentumThresholdResult detail::mean_basis_momentum_threshold(const Geometry& g, const MeanBasis& mean, Index batch,
                                                              Sampling sampling, const Momentum& mo,
                                                              double weight_decay, const SolverOptions& options,
                                                              Index scan_points, const char* where) {
  return momentum_threshold_untimed(g, batch, sampling, mo, options, scan_points, weight_decay, where, 0.0, &mean);
}

std::vector<std::vector<MomentumThresholdResult>> detail::momentum_levels(const Geometry& g,
                                                                          const std::vector<Sampling>& schemes,
                                                                          const std::vector<Index>& batches,
                                                                          const Momentum& mo,
                                                                          const SolverOptions& options,
                                                                          double weight_decay, double decoupled,
                                                                          const MeanBasis* mean) {
  std::vector<std::vector<MomentumThresholdResult>> out(schemes.size());
  struct Level {
    double b;
    std::size_t scheme, point;
  };
  std::vector<Level> levels[2];  // [0]: C_0 = D - H . H, [1]: C_0 = D (Bernoulli)
  for (std::size_t k = 0; k < schemes.size(); ++k)
    for (std::size_t j = 0; j < batches.size(); ++j) {
      out[k].push_back(threshold_result(g, batches[j], schemes[k], mo, weight_decay, decoupled, mean));
      levels[bernoulli_class(schemes[k]) ? 1 : 0].push_back({noise_level(schemes[k], g.samples(), batches[j]), k, j});
    }
  for (int cls = 0; cls < 2; ++cls) {
    if (levels[cls].empty()) continue;
    std::sort(levels[cls].begin(), levels[cls].end(), [](const Level& x, const Level& y) { return x.b > y.b; });
    std::optional<KappaFunction> kappa0;
    for (const Level& l : levels[cls]) {
      MomentumThresholdResult& res = out[l.scheme][l.point];
      if (l.b > 0.0 && !kappa0) kappa0.emplace(g, cls == 1, mo, options, weight_decay, decoupled, mean);
      solve_level(l.b > 0.0 ? &*kappa0 : nullptr, l.b, options, 0, res);
    }
  }
  return out;
}

namespace {

std::vector<MomentumThresholdResult> curve_untimed(const Geometry& geometry, const std::vector<Index>& batches,
                                                   Sampling sampling, const Momentum& momentum,
                                                   const SolverOptions& options, double weight_decay,
                                                   const char* where, double decoupled = 0.0) {
  options.validate();
  momentum.validate();
  check_weight_decay_finite(weight_decay, where);
  check_decoupled(decoupled, momentum, where);
  detail::require(!batches.empty(), where, "the list of batch sizes is empty");
  for (const Index b : batches) check_batch(b, geometry.samples(), where);
  const detail::Stopwatch watch;
  std::vector<MomentumThresholdResult> out =
      detail::momentum_levels(geometry, {sampling}, batches, momentum, options, weight_decay, decoupled).front();
  for (MomentumThresholdResult& r : out) r.report.seconds = watch.seconds();
  return out;
}

}  // namespace

std::vector<MomentumThresholdResult> momentum_threshold_curve(const Geometry& geometry, const std::vector<Index>& batches,
                                                              Sampling sampling, Momentum momentum,
                                                              const SolverOptions& options) {
  return curve_untimed(geometry, batches, sampling, momentum, options, 0.0, "momentum_threshold_curve");
}

std::vector<MomentumThresholdResult> weight_decay_momentum_threshold_curve(const Geometry& geometry,
                                                                           const std::vector<Index>& batches,
                                                                           Sampling sampling, Momentum momentum,
                                                                           double weight_decay,
                                                                           const SolverOptions& options) {
  return curve_untimed(geometry, batches, sampling, momentum, options, weight_decay,
                       "weight_decay_momentum_threshold_curve");
}

MomentumThresholdResult detail::decayed_momentum_threshold(const Geometry& g, Index batch, Sampling sampling,
                                                           const Momentum& mo, double weight_decay, double decoupled,
                                                           const SolverOptions& options, Index scan_points,
                                                           const char* where) {
  return momentum_threshold_untimed(g, batch, sampling, mo, options, scan_points, weight_decay, where, decoupled);
}

std::vector<MomentumThresholdResult> detail::decayed_momentum_curve(const Geometry& g, const std::vector<Index>& batches,
                                                                    Sampling sampling, const Momentum& mo,
                                                                    double weight_decay, double decoupled,
                                                                    const SolverOptions& options, const char* where) {
  return curve_untimed(g, batches, sampling, mo, options, weight_decay, where, decoupled);
}

bool detail::momentum_mean_kernel(const Eigen::VectorXd& d, double eta, const Momentum& mo, double decoupled,
                                  MatrixXd& g) {
  return mean_kernel(d, eta, mo, decoupled, g);
}

}  // namespace sgdstab

