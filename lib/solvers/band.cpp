// A certified band for eta*(B) from a few applications of Q
// (include/sgdstab/band.hpp; theory/band.md).
#include "sgdstab/band.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/option_fields.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/moment_operator.hpp"
#include "solvers/band_detail.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using detail::require;

void BandOptions::validate() const {
  check_fields(*this, "BandOptions");  // the table's rules (below)
  for (double a : exponents)
    require(std::isfinite(a), "BandOptions::exponents", "must be finite, got " + detail::fmt(a));
}

namespace options_detail {

std::vector<OptionField<BandOptions>> band_table() {
  using S = BandOptions;
  return {
      on_cli(with_rule(field("tolerance", &S::tolerance, "stop once the band's relative width is at most this"),
                       "must lie in (0, 1)", [](const OptionValue& v) { return real_in(v, 0.0, 1.0); }),
             "band-tol", "X"),
      on_cli(with_rule(field("top_vectors", &S::top_vectors, "H's top eigenvectors whose pairs start the trial space"),
                       "must be >= 0", at_least(0)),
             "top-vectors", "K"),
      on_cli(with_rule(field("max_steps", &S::max_steps, "growth steps of the trial space"), "must be >= 0",
                       at_least(0)),
             "band-steps", "K"),
      on_cli(with_rule(field("subspace", &S::subspace, "matrix-free: dimension of the parameter subspace of the upper side"),
                       "must be >= 1", at_least(1)),
             "band-subspace", "M"),
      on_cli(with_rule(field("subspace_doublings", &S::subspace_doublings,
                             "matrix-free: times the upper side's subspace may double while the band is wider than "
                             "the tolerance and each doubling closes at least a tenth of the gap (0: fixed)"),
                       "must lie in [0, 10]", [](const OptionValue& v) {
                         const long long k = std::get<long long>(v);
                         return k >= 0 && k <= 10;
                       }),
             "band-doublings", "K"),
      on_cli(with_rule(field("lanczos_steps", &S::lanczos_steps, "matrix-free: Lanczos vectors for the lower side, per batch size"),
                       "must be >= 2", at_least(2)),
             "band-lanczos", "K"),
      on_cli(with_rule(field("noise_vectors", &S::noise_vectors,
                             "matrix-free: top noise directions J^T u added to the upper side's subspace, per batch size"),
                       "must be >= 0", at_least(0)),
             "band-noise-vectors", "K"),
      on_cli(with_rule(field("delta", &S::delta,
                             "matrix-free: failure probability allowed for the probabilistic lower side (0: certified only)"),
                       "must lie in [0, 1)",
                       [](const OptionValue& v) {
                         const double x = std::get<double>(v);
                         return std::isfinite(x) && x >= 0.0 && x < 1.0;
                       }),
             "band-delta", "X"),
      with_rule(field("seed", &S::seed, "matrix-free: seed of the random start vectors"), "must be >= 0", at_least(0)),
      with_rule(field("momentum", &S::momentum,
                      "SGD with momentum beta (0: plain SGD; theory/band.md, section 6)"),
                "must lie in [0, 1)",
                [](const OptionValue& v) {
                  const double x = std::get<double>(v);
                  return std::isfinite(x) && x >= 0.0 && x < 1.0;
                }),
      field("nesterov", &S::nesterov, "Nesterov's momentum (at momentum 0: plain SGD)"),
  };
}

}  // namespace options_detail

namespace {

double inner(const MatrixXd& x, const MatrixXd& y) { return (x.array() * y.array()).sum(); }

// The trial space V of the Rayleigh-Ritz side (theory/band.md, eq. 2): an
// orthonormal (Frobenius) basis with Q and A of each member kept.
class TrialSpace {
 public:
  TrialSpace(const SecondMomentOperator& op, const VectorXd& d) : op_(op), d_(d) {}

  // Adds x's part orthogonal to V (Gram-Schmidt twice); one application of Q.
  void add(MatrixXd x) {
    const double norm0 = x.norm();
    if (!(norm0 > 0.0) || !std::isfinite(norm0)) return;
    for (int pass = 0; pass < 2; ++pass)
      for (const MatrixXd& b : basis_) x -= inner(b, x) * b;
    const double norm = x.norm();
    if (!(norm > 1e-10 * norm0)) return;  // in V up to rounding
    x /= norm;
    x = 0.5 * (x + x.transpose()).eval();
    q_.push_back(op_.quadratic(x));
    a_.push_back(anticommutator(x));
    basis_.push_back(std::move(x));
  }

  Index size() const { return static_cast<Index>(basis_.size()); }

  // A(S) = H S + S H with H = diag(d).
  MatrixXd anticommutator(const MatrixXd& s) const {
    return (s.array().colwise() * d_.array() + s.array().rowwise() * d_.transpose().array()).matrix();
  }
  // A^{-1}(S): entry (k, l) over d_k + d_l.
  MatrixXd solve_anticommutator(const MatrixXd& s) const {
    return (s.array() / (d_.replicate(1, d_.size()) + d_.transpose().replicate(d_.size(), 1)).array()).matrix();
  }

  // The largest Ritz value mu of the pencil (Q, A) on V, its matrix X and Q(X).
  // \throws numerical_error when the small pencil cannot be solved.
  double ritz(MatrixXd& x, MatrixXd& qx) const {
    const Index m = size();
    MatrixXd gq(m, m), ga(m, m);
    for (Index j = 0; j < m; ++j)
      for (Index k = 0; k <= j; ++k) {
        gq(j, k) = gq(k, j) = 0.5 * (inner(basis_[j], q_[k]) + inner(basis_[k], q_[j]));
        ga(j, k) = ga(k, j) = 0.5 * (inner(basis_[j], a_[k]) + inner(basis_[k], a_[j]));
      }
    Eigen::GeneralizedSelfAdjointEigenSolver<MatrixXd> es(gq, ga);
    if (es.info() != Eigen::Success)
      throw numerical_error("stability_band: the Rayleigh-Ritz pencil could not be solved");
    const VectorXd y = es.eigenvectors().col(m - 1);
    x = MatrixXd::Zero(d_.size(), d_.size());
    qx = MatrixXd::Zero(d_.size(), d_.size());
    for (Index j = 0; j < m; ++j) {
      x += y(j) * basis_[j];
      qx += y(j) * q_[j];
    }
    if (x.trace() < 0.0) {  // the Perron matrix is positive semidefinite: fix the sign
      x = -x;
      qx = -qx;
    }
    return es.eigenvalues()(m - 1);
  }

 private:
  const SecondMomentOperator& op_;
  const VectorXd& d_;
  std::vector<MatrixXd> basis_, q_, a_;
};

// The Collatz-Wielandt side for one X (theory/band.md, eq. 4): when X > 0 and
// A(X) > 0, every eta <= 1 / lambda_max(A(X)^{-1/2} Q(X) A(X)^{-1/2}) has
// T(X) <= X, hence rho(T) <= 1. 0 when X or A(X) is not positive definite.
double collatz_wielandt(const MatrixXd& x, const MatrixXd& ax, const MatrixXd& qx) {
  Eigen::LLT<MatrixXd> xf(x);
  if (xf.info() != Eigen::Success) return 0.0;
  Eigen::LLT<MatrixXd> af(ax);
  if (af.info() != Eigen::Success) return 0.0;
  MatrixXd m = af.matrixL().solve(qx);
  m = af.matrixL().solve(m.transpose()).transpose();
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(0.5 * (m + m.transpose()), Eigen::EigenvaluesOnly);
  if (es.info() != Eigen::Success) return 0.0;
  const double top = es.eigenvalues()(m.rows() - 1);
  return top > 0.0 ? 1.0 / top : 0.0;
}

// x with its eigenvalues below floor * lambda_max(x) raised to it: positive
// definite, close to x when x is nearly so.
MatrixXd positive_part(const MatrixXd& x, double floor) {
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(0.5 * (x + x.transpose()));
  VectorXd w = es.eigenvalues();
  const double top = w.maxCoeff();
  if (!(top > 0.0)) return MatrixXd::Identity(x.rows(), x.cols());
  w = w.cwiseMax(floor * top);
  return es.eigenvectors() * w.asDiagonal() * es.eigenvectors().transpose();
}

// The starting trial space: Pi, H, H^2, H^3 and the symmetric pairs of H's top vectors.
void start_space(TrialSpace& v, const VectorXd& d, Index top) {
  const Index r = d.size();
  for (int power = 0; power <= 3; ++power) v.add(MatrixXd(d.array().pow(power).matrix().asDiagonal()));
  for (Index i = 0; i < std::min(top, r); ++i)
    for (Index j = i; j < std::min(top, r); ++j) {
      MatrixXd e = MatrixXd::Zero(r, r);
      e(i, j) = e(j, i) = 1.0;
      v.add(e);
    }
}

}  // namespace

BandResult stability_band(const Geometry& g, Index batch, Sampling sampling, const BandOptions& o) {
  const detail::Stopwatch watch;
  o.validate();
  // Momentum: the map is not self-adjoint and the trial space above proves
  // nothing; the matrix-free sides (theory/band.md, section 6) on Z.
  if (o.momentum > 0.0) {
    check_batch(batch, g.samples(), "stability_band");
    return detail::band_region_known_top(JacobianModel::from_geometry(g), {sampling}, {batch}, o, g.lambda_max())
        .front()
        .front();
  }
  const SecondMomentOperator op(g, batch, sampling);  // checks the batch
  const VectorXd& d = g.hessian_eigenvalues();         // H = diag(d) in reduced coordinates
  BandResult res;
  res.batch = batch;
  res.sampling = sampling;
  TrialSpace v(op, d);
  start_space(v, d, o.top_vectors);
  Index products = v.size();
  for (double a : o.exponents) {  // X = H^a
    const MatrixXd x = d.array().pow(a).matrix().asDiagonal();
    const double low = collatz_wielandt(x, v.anticommutator(x), op.quadratic(x));
    ++products;
    if (low > res.eta_low) {
      res.eta_low = low;
      res.low_witness = "H^" + detail::fmt(a);
    }
  }
  MatrixXd x, qx;
  for (Index step = 0;; ++step) {
    detail::throw_if_interrupted("stability_band");
    res.eta_high = 1.0 / v.ritz(x, qx);
    const MatrixXd xp = positive_part(x, 1e-6);
    const double low = collatz_wielandt(xp, v.anticommutator(xp), op.quadratic(xp));
    ++products;
    if (low > res.eta_low) {
      res.eta_low = low;
      res.low_witness = "ritz";
    }
    res.relative_width = (res.eta_high - res.eta_low) / res.eta_high;
    res.report.iterations = step;
    if (res.relative_width <= o.tolerance || step == o.max_steps) break;
    const Index before = v.size();
    v.add(v.solve_anticommutator(qx));  // A^{-1} Q X: the next Krylov direction of the pencil
    if (v.size() == before) break;      // A^{-1} Q X in V: X is an eigenmatrix of the pencil, V cannot grow from it
    ++products;
  }
  res.trial_dimension = v.size();
  res.eta_low_certified = res.eta_low;  // every side here is certified
  res.report.matvecs = products;
  res.report.status = Status::converged;  // both sides certified, whatever the width
  res.report.message = "band of relative width " + detail::fmt(res.relative_width) +
                       (res.relative_width <= o.tolerance ? " (within the tolerance)" : " (wider than the tolerance " + detail::fmt(o.tolerance) + ")") +
                       " from " + std::to_string(res.trial_dimension) + " trial matrices";
  res.report.seconds = watch.seconds();
  return res;
}

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::BandOptions, sgdstab::options_detail::band_table);
