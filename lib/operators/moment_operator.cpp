// The second-moment operator of linearized SGD: theory/operator.md.
// Matrix-free application of Q in O(n c r^2): theory/operator.md, section 4.
#include "sgdstab/moment_operator.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "foundations/parallel.hpp"
#include "operators/operator_kernels.hpp"
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
  const double inv = 1.0 / kSqrt2;
  detail::parallel_lower_columns(r, [&](Index l0, Index l1) {
    Index idx = detail::packed_offset(l0, r);
    for (Index l = l0; l < l1; ++l) {
      double* col = s.col(l).data();
      const double* wl = w != nullptr ? w->col(l).data() : nullptr;
      col[l] = x[idx++] * (wl != nullptr ? wl[l] : 1.0);
      for (Index k = l + 1; k < r; ++k) col[k] = x[idx++] * inv * (wl != nullptr ? wl[k] : 1.0);
    }
  });
}

void unpack_into(const double* x, Index r, MatrixXd& s) {
  unpack_lower_into(x, r, s, nullptr);
  detail::symmetrize_from_lower(s);
}

// pack_into of (w o s), reading the lower triangle only.
void pack_weighted_into(const MatrixXd& s, const MatrixXd& w, double* x) {
  const Index r = s.rows();
  detail::parallel_lower_columns(r, [&](Index l0, Index l1) {
    Index idx = detail::packed_offset(l0, r);
    for (Index l = l0; l < l1; ++l) {
      const double* col = s.col(l).data();
      const double* wl = w.col(l).data();
      x[idx++] = col[l] * wl[l];
      for (Index k = l + 1; k < r; ++k) x[idx++] = kSqrt2 * col[k] * wl[k];
    }
  });
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
  return detail::moment_workspace_bytes(geometry_->factor().rows(), dimension());
}

double detail::moment_workspace_bytes(Index nc_rows, Index rank) {
  const double nc = static_cast<double>(nc_rows), r = static_cast<double>(rank);
  return 8.0 * (2.0 * nc * r + 3.0 * r * r);
}

// Q(S) = alpha D S D + (beta / n) sum_i h_i S h_i = alpha D S D + (beta / n) (P^T P - M^T M),
// lower triangle only (DTRMM and DSYRK read and write lower triangles).
void SecondMomentOperator::quadratic_lower_into(const MatrixXd& s, MatrixXd& out) const {
  const VectorXd& d = geometry_->hessian_eigenvalues();
  const Index r = dimension();
  out.resize(r, r);
  // out (lower) = alpha D S D first, one threaded pass (zeros when alpha = 0); the samples' sum is added to it.
  const double alpha = factors_.alpha;
  detail::parallel_lower_columns(r, [&](Index l0, Index l1) {
    for (Index l = l0; l < l1; ++l) {
      double* o = out.col(l).data();
      const double* sl = s.col(l).data();
      const double adl = alpha * d(l);
      if (alpha == 0.0)
        std::fill(o + l, o + r, 0.0);
      else
        for (Index k = l; k < r; ++k) o[k] = adl * d(k) * sl[k];
    }
  });
  if (factors_.beta != 0.0) {
    // theory/operator.md, section 4 (operator_kernels.hpp): 2 n c r^2 flops.
    const double scale = factors_.beta / static_cast<double>(geometry_->samples());
    detail::sample_sum_lower(geometry_->factor(), s, geometry_->outputs(), scale, w_, plus_, blocks_, rows_coef_,
                             rows_sample_, out);
  }
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
