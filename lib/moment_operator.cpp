// The second-moment operator of linearized SGD: theory/operator.md.
// Matrix-free application of Q in O(n c r^2): theory/operator.md, section 4.
#include "sgdstab/moment_operator.hpp"

#include <Eigen/Eigenvalues>
#include <cmath>

#include "check.hpp"
#include "linalg.hpp"
#include "sgdstab/errors.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {
const double kSqrt2 = std::sqrt(2.0);

void pack_into(const MatrixXd& s, double* x) {
  const Index r = s.rows();
  Index idx = 0;
  for (Index l = 0; l < r; ++l) {
    x[idx++] = s(l, l);
    for (Index k = l + 1; k < r; ++k) x[idx++] = kSqrt2 * s(k, l);
  }
}

// The lower triangle of s from packed x, times w entrywise (w = null: times 1).
void unpack_lower_into(const double* x, Index r, MatrixXd& s, const MatrixXd* w) {
  s.resize(r, r);
  Index idx = 0;
  const double inv = 1.0 / kSqrt2;
  for (Index l = 0; l < r; ++l) {
    double* col = s.col(l).data();
    const double* wl = w != nullptr ? w->col(l).data() : nullptr;
    col[l] = x[idx++] * (wl != nullptr ? wl[l] : 1.0);
    for (Index k = l + 1; k < r; ++k) col[k] = x[idx++] * inv * (wl != nullptr ? wl[k] : 1.0);
  }
}

void unpack_into(const double* x, Index r, MatrixXd& s) {
  unpack_lower_into(x, r, s, nullptr);
  detail::symmetrize_from_lower(s);
}

// pack_into of (w o s), reading the lower triangle only.
void pack_weighted_into(const MatrixXd& s, const MatrixXd& w, double* x) {
  const Index r = s.rows();
  Index idx = 0;
  for (Index l = 0; l < r; ++l) {
    const double* col = s.col(l).data();
    const double* wl = w.col(l).data();
    x[idx++] = col[l] * wl[l];
    for (Index k = l + 1; k < r; ++k) x[idx++] = kSqrt2 * col[k] * wl[k];
  }
}
}  // namespace

Index packed_size(Index r) { return r * (r + 1) / 2; }

VectorXd pack(const MatrixXd& s) {
  detail::require(s.rows() == s.cols(), "pack", "the matrix must be square");
  VectorXd x(packed_size(s.rows()));
  pack_into(s, x.data());
  return x;
}

MatrixXd unpack(const Eigen::Ref<const VectorXd>& x, Index r) {
  detail::require(r >= 0 && x.size() == packed_size(r), "unpack",
                  "x must have r (r + 1) / 2 = " + std::to_string(packed_size(r)) +
                      " entries, got " + std::to_string(x.size()));
  const VectorXd copy = x;
  MatrixXd s;
  unpack_into(copy.data(), r, s);
  return s;
}

SecondMomentOperator::SecondMomentOperator(const Geometry& geometry, Index batch,
                                           Sampling sampling)
    : geometry_(&geometry),
      batch_(batch),
      sampling_(sampling),
      factors_(sampling_factors(sampling, geometry.samples(), batch)) {}

void SecondMomentOperator::check_shape(const MatrixXd& s, const char* where) const {
  const Index r = dimension();
  detail::require(s.rows() == r && s.cols() == r, where,
                  "S must be r x r = " + std::to_string(r) + " x " + std::to_string(r) +
                      " (reduced coordinates), got " + std::to_string(s.rows()) + " x " +
                      std::to_string(s.cols()));
  const double asym = (s - s.transpose()).cwiseAbs().maxCoeff();
  detail::require(asym <= 1e-12 * s.cwiseAbs().maxCoeff(), where,
                  "S must be symmetric (max |S - S^T| = " + detail::fmt(asym) + ")");
}

MatrixXd SecondMomentOperator::anticommutator(const MatrixXd& s) const {
  check_shape(s, "SecondMomentOperator::anticommutator");
  const VectorXd& d = geometry_->hessian_eigenvalues();
  return d.asDiagonal() * s + s * d.asDiagonal();
}

MatrixXd SecondMomentOperator::quadratic(const MatrixXd& s) const {
  check_shape(s, "SecondMomentOperator::quadratic");
  MatrixXd out;
  quadratic_into(s, out);
  return out;
}

MatrixXd SecondMomentOperator::transition(const MatrixXd& s, double lr) const {
  detail::require(std::isfinite(lr) && lr > 0, "SecondMomentOperator::transition",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
  return s - lr * anticommutator(s) + lr * lr * quadratic(s);
}

std::vector<MatrixXd> SecondMomentOperator::propagate(const MatrixXd& s0, double lr,
                                                      Index steps) const {
  detail::require(steps >= 0, "SecondMomentOperator::propagate",
                  "steps must be >= 0, got " + std::to_string(steps));
  std::vector<MatrixXd> out;
  out.reserve(static_cast<std::size_t>(steps) + 1);
  out.push_back(s0);
  for (Index t = 0; t < steps; ++t) out.push_back(transition(out.back(), lr));
  return out;
}

double SecondMomentOperator::workspace_bytes() const {
  const double nc = static_cast<double>(geometry_->factor().rows());
  const double r = static_cast<double>(dimension());
  return 8.0 * (2.0 * nc * r + 3.0 * r * r);
}

// out = alpha D S D + beta (1/n) sum_i Z_i^T (Z_i S Z_i^T) Z_i, S symmetric.
// theory/operator.md, section 4: W = Z S (one GEMM), the c x c blocks
// C_i = W_i Z_i^T are split by sign, C_i = sum_j lambda_ij u_ij u_ij^T, and
// sum_i Z_i^T C_i Z_i = P^T P - M^T M with rows sqrt|lambda_ij| u_ij^T Z_i
// (two SYRKs, half a GEMM together).
// Blocks C_i = W_i Z_i^T (c x c, row-major per sample) of W = Z S, in one pass over the columns.
void SecondMomentOperator::sample_blocks(const MatrixXd& s) const {
  const MatrixXd& z = geometry_->factor();
  const Index r = dimension(), c = geometry_->outputs(), n = geometry_->samples();
  detail::symm_right(z, s, w_);  // W = Z S
  blocks_.assign(static_cast<std::size_t>(n * c * c), 0.0);
  for (Index k = 0; k < r; ++k) {
    const double* wk = w_.col(k).data();
    const double* zk = z.col(k).data();
    for (Index i = 0; i < n; ++i) {
      double* ci = blocks_.data() + i * c * c;
      const double* wi = wk + i * c;
      const double* zi = zk + i * c;
      for (Index a = 0; a < c; ++a)
        for (Index b = 0; b < c; ++b) ci[a * c + b] += wi[a] * zi[b];
    }
  }
}

// Signed square-root rows: C_i = sum_j lambda_ij u_ij u_ij^T; a row
// sqrt|lambda_ij| u_ij^T Z_i goes to P (lambda > 0) or M (lambda < 0). Row j
// of the stacked [P; M] is rows_coef_[j] . Z_{rows_sample_[j]}. Returns the
// number of P rows.
Index SecondMomentOperator::signed_root_rows() const {
  const Index c = geometry_->outputs(), n = geometry_->samples();
  rows_sample_.clear();
  rows_coef_.clear();
  std::vector<Index> neg_sample;
  std::vector<double> neg_coef;
  if (c == 1) {
    for (Index i = 0; i < n; ++i) {
      const double lam = blocks_[static_cast<std::size_t>(i)];
      if (lam > 0) { rows_sample_.push_back(i); rows_coef_.push_back(std::sqrt(lam)); }
      if (lam < 0) { neg_sample.push_back(i); neg_coef.push_back(std::sqrt(-lam)); }
    }
  } else {
    MatrixXd ci(c, c);
    Eigen::SelfAdjointEigenSolver<MatrixXd> es(c);
    for (Index i = 0; i < n; ++i) {
      const double* bi = blocks_.data() + i * c * c;
      for (Index a = 0; a < c; ++a)
        for (Index b = 0; b < c; ++b) ci(a, b) = 0.5 * (bi[a * c + b] + bi[b * c + a]);
      es.compute(ci);
      for (Index j = 0; j < c; ++j) {
        const double lam = es.eigenvalues()(j);
        if (lam == 0) continue;
        const double root = std::sqrt(std::abs(lam));
        (lam > 0 ? rows_sample_ : neg_sample).push_back(i);
        auto& coefs = lam > 0 ? rows_coef_ : neg_coef;
        for (Index a = 0; a < c; ++a) coefs.push_back(root * es.eigenvectors()(a, j));
      }
    }
  }
  const Index kp = static_cast<Index>(rows_sample_.size());
  rows_sample_.insert(rows_sample_.end(), neg_sample.begin(), neg_sample.end());
  rows_coef_.insert(rows_coef_.end(), neg_coef.begin(), neg_coef.end());
  return kp;
}

// The stacked rows [P; M] at the top of plus_ (rows <= n c).
void SecondMomentOperator::stack_rows(Index rows) const {
  const MatrixXd& z = geometry_->factor();
  const Index r = dimension(), c = geometry_->outputs();
  plus_.resize(z.rows(), r);
  for (Index k = 0; k < r; ++k) {
    const double* zk = z.col(k).data();
    double* pk = plus_.col(k).data();
    for (Index j = 0; j < rows; ++j) {
      const double* coef = rows_coef_.data() + j * c;
      const double* zi = zk + rows_sample_[static_cast<std::size_t>(j)] * c;
      double acc = 0;
      for (Index a = 0; a < c; ++a) acc += coef[a] * zi[a];
      pk[j] = acc;
    }
  }
}

// Q(S) = alpha D S D + (beta / n) sum_i h_i S h_i = alpha D S D + (beta / n) (P^T P - M^T M),
// lower triangle only (DSYMM and DSYRK read and write lower triangles).
void SecondMomentOperator::quadratic_lower_into(const MatrixXd& s, MatrixXd& out) const {
  const VectorXd& d = geometry_->hessian_eigenvalues();
  const Index r = dimension(), nc = geometry_->factor().rows();
  out.setZero(r, r);
  if (factors_.beta != 0.0) {
    sample_blocks(s);
    const Index kp = signed_root_rows();
    const Index km = static_cast<Index>(rows_sample_.size()) - kp;
    stack_rows(kp + km);
    const double scale = factors_.beta / static_cast<double>(geometry_->samples());
    detail::syrk_lower(true, scale, plus_.data(), kp, r, nc, out);
    detail::syrk_lower(true, -scale, plus_.data() + kp, km, r, nc, out);
  }
  if (factors_.alpha != 0.0)
    for (Index l = 0; l < r; ++l)
      for (Index k = l; k < r; ++k) out(k, l) += factors_.alpha * d(k) * d(l) * s(k, l);
}

void SecondMomentOperator::quadratic_into(const MatrixXd& s, MatrixXd& out) const {
  quadratic_lower_into(s, out);
  detail::symmetrize_from_lower(out);
}

PencilOperator::PencilOperator(const SecondMomentOperator& op) : op_(&op) {
  const VectorXd& d = op.geometry().hessian_eigenvalues();
  const Index r = d.size();
  inv_sqrt_a_.resize(r, r);
  for (Index l = 0; l < r; ++l)
    for (Index k = 0; k < r; ++k) inv_sqrt_a_(k, l) = 1.0 / std::sqrt(d(k) + d(l));
}

// Lower triangles throughout: the weights and Q act entrywise or read lower triangles.
void PencilOperator::perform_op(const Scalar* x_in, Scalar* y_out) const {
  const Index r = op_->dimension();
  unpack_lower_into(x_in, r, s_, &inv_sqrt_a_);
  op_->quadratic_lower_into(s_, q_);
  pack_weighted_into(q_, inv_sqrt_a_, y_out);
  ++applications_;
}

TransitionOperator::TransitionOperator(const SecondMomentOperator& op, double lr)
    : op_(&op), lr_(lr) {
  detail::require(std::isfinite(lr) && lr > 0, "TransitionOperator",
                  "learning rate must be finite and > 0, got " + detail::fmt(lr));
}

void TransitionOperator::perform_op(const Scalar* x_in, Scalar* y_out) const {
  const Index r = op_->dimension();
  const VectorXd& d = op_->geometry().hessian_eigenvalues();
  unpack_into(x_in, r, s_);
  op_->quadratic_into(s_, q_);
  for (Index l = 0; l < r; ++l)
    for (Index k = 0; k < r; ++k)
      q_(k, l) = s_(k, l) - lr_ * (d(k) + d(l)) * s_(k, l) + lr_ * lr_ * q_(k, l);
  pack_into(q_, y_out);
  ++applications_;
}

}  // namespace sgdstab
