// Reduction of the local geometry to range(H): theory/reduction.md.
#include "sgdstab/geometry.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "foundations/check.hpp"
#include "foundations/interrupt_detail.hpp"
#include "foundations/linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

// Each field's rule is in its table (reduction_options.cpp), with its default and help.
void ReductionOptions::validate() const { check_fields(*this, "ReductionOptions"); }

namespace {

void check_outputs(Index rows, Index outputs, const std::string& where) {
  detail::require(rows > 0, where, "the matrix is empty (0 rows)");
  detail::require(outputs >= 1, where, "outputs C must be >= 1, got " + std::to_string(outputs));
  detail::require(rows % outputs == 0, where,
                  "the row count " + std::to_string(rows) + " is not divisible by outputs C = " +
                      std::to_string(outputs) + " (rows must be n*C, sample-major)");
}

template <class M>
void check_finite(const M& m, const std::string& where) {
  for (Index j = 0; j < m.cols(); ++j)
    for (Index i = 0; i < m.rows(); ++i)
      if (!std::isfinite(m(i, j)))
        throw sgdstab::invalid_argument(where + ": entry (" + std::to_string(i) + ", " +
                                        std::to_string(j) + ") is not finite (" +
                                        detail::fmt(m(i, j)) + ")");
}

// dsyevd needs about 2 dim^2 doubles of workspace besides the matrix itself.
double eigen_bytes(Index dim) { return detail::dense_bytes(dim); }

// No result struct exists yet to carry a status: a LAPACK failure throws
// sgdstab::numerical_error (errors.hpp).
// LAPACK cannot be interrupted: a pending request is honoured just before
// and just after it (docs/reliability.md states the bound).
void eigendecompose(MatrixXd& a, VectorXd& w, const std::string& where) {
  detail::throw_if_interrupted("the reduction (before the eigendecomposition)");
  detail::symmetric_eigen_or_throw(a, w, where);
  detail::throw_if_interrupted("the reduction (after the eigendecomposition)");
}

// Far from 1, the input is scaled by an exact power of two before the
// reduction and the result scaled back (theory/scaling.md): J J^T must
// neither overflow nor lose digits to subnormal products. Returns the
// exponent e of 2 to divide by, 0 when the input's units are safe.
int reduction_exponent(double amax, int window) {
  if (!(amax > 0)) return 0;
  const int e = std::ilogb(amax);
  return (e > window || e < -window) ? e : 0;
}

}  // namespace

void Geometry::scale_units(int exponent, const std::string& where) {
  factor_ *= std::ldexp(1.0, exponent);
  hessian_eigenvalues_ *= std::ldexp(1.0, 2 * exponent);
  largest_discarded_ *= std::ldexp(1.0, 2 * exponent);
  if (!std::isfinite(hessian_eigenvalues_(0)) || !(hessian_eigenvalues_(hessian_eigenvalues_.size() - 1) > 0))
    throw sgdstab::invalid_argument(where + ": the Hessian's eigenvalues do not fit in double precision (lambda_max(H) "
                                    "beyond 1e308 or its smallest nonzero one below 1e-308): rescale the input");
}

Geometry Geometry::from_eigen(const MatrixXd& vectors, const VectorXd& values, Index n, Index c,
                              Index p, Index dim, const ReductionOptions& options,
                              double negative_floor, Space space,
                              const std::function<MatrixXd(const MatrixXd&)>& times_jacobian) {
  const Index m = values.size();
  const double top = values(m - 1);
  const double rel = options.rank_tolerance > 0
                         ? options.rank_tolerance
                         : 10.0 * static_cast<double>(dim) * std::numeric_limits<double>::epsilon();
  const double cutoff = std::max(rel * std::max(top, 0.0), 2.0 * negative_floor);
  Index r = 0;
  while (r < m && values(m - 1 - r) > cutoff && top > 0) ++r;
  if (r == 0)
    throw sgdstab::invalid_argument(
        "Geometry: the Jacobian has rank 0 (largest Gram eigenvalue " + detail::fmt(top) +
        " <= cut-off " + detail::fmt(cutoff) +
        "): H = 0 and every learning rate is trivially stable; nothing to compute");
  Geometry g;
  g.samples_ = n;
  g.outputs_ = c;
  g.params_ = p;
  g.space_ = space;
  g.largest_discarded_ = (r < m) ? std::max(values(m - 1 - r), 0.0) : 0.0;
  g.hessian_eigenvalues_.resize(r);
  for (Index k = 0; k < r; ++k) g.hessian_eigenvalues_(k) = values(m - 1 - k) / static_cast<double>(n);
  MatrixXd kept(vectors.rows(), r);
  for (Index k = 0; k < r; ++k) kept.col(k) = vectors.col(m - 1 - k);
  if (space == Space::sample) {
    // Z = U_r Lambda_r^{1/2}  (theory/reduction.md, eq. 3)
    g.factor_ = kept * values.tail(r).reverse().cwiseSqrt().asDiagonal();
  } else {
    // Z = J V_r  (theory/reduction.md, eq. 4)
    g.factor_ = times_jacobian(kept);
  }
  return g;
}

namespace {

// BLAS view of a dense Jacobian in either storage order: `data` holds J
// (column-major, leading dimension ld) or J^T (row-major J).
template <class Matrix>
struct JacobianLayout;
template <>
struct JacobianLayout<MatrixXd> {
  static constexpr bool row_major = false;
};
template <>
struct JacobianLayout<RowMatrixXd> {
  static constexpr bool row_major = true;
};

}  // namespace

template <class Matrix>
Geometry Geometry::jacobian_reduction(const Eigen::Ref<const Matrix>& jacobian, Index outputs,
                                      const ReductionOptions& options) {
  options.validate();
  const std::string where = "Geometry::from_jacobian";
  check_outputs(jacobian.rows(), outputs, where);
  detail::require(jacobian.cols() > 0, where, "the Jacobian has 0 columns (parameters)");
  check_finite(jacobian, where);
  const Index nc = jacobian.rows(), p = jacobian.cols(), n = nc / outputs;
  if (const int e = reduction_exponent(jacobian.cwiseAbs().maxCoeff(), 256)) {
    check_memory(8.0 * static_cast<double>(nc) * static_cast<double>(p),
                 "a rescaled copy of the Jacobian (its entries are near 2^" + std::to_string(e) + ")",
                 options.memory_limit_bytes);
    const Matrix scaled = jacobian * std::ldexp(1.0, -e);
    Geometry g = jacobian_reduction<Matrix>(scaled, outputs, options);
    g.scale_units(e, where);
    return g;
  }
  Space space = options.space;
  if (space == Space::automatic) space = (nc <= p) ? Space::sample : Space::parameter;
  const Index dim = (space == Space::sample) ? nc : p;
  check_memory(eigen_bytes(dim) + 8.0 * nc * std::min(nc, p),
               "the reduction (eigendecomposition of a " + std::to_string(dim) + " x " +
                   std::to_string(dim) + " Gram)",
               options.memory_limit_bytes);
  MatrixXd gram(dim, dim);
  gram.setZero();
  // Lower triangle only (dsyevd reads no more): BLAS SYRK. A row-major J is
  // the column-major p x nc matrix J^T, read in place (no copy).
  const bool sample = space == Space::sample;
  if (JacobianLayout<Matrix>::row_major)
    detail::syrk_lower(sample, 1.0, jacobian.data(), p, nc, jacobian.outerStride(), gram);
  else
    detail::syrk_lower(!sample, 1.0, jacobian.data(), nc, p, jacobian.outerStride(), gram);
  VectorXd w;
  eigendecompose(gram, w, where);
  const double negative_floor = std::max(0.0, -w(0));
  const auto times_jacobian = [&jacobian](const MatrixXd& v) -> MatrixXd { return jacobian * v; };
  return from_eigen(gram, w, n, outputs, p, std::max(nc, p), options, negative_floor, space, times_jacobian);
}

Geometry Geometry::from_jacobian(const Eigen::Ref<const MatrixXd>& jacobian, Index outputs,
                                 const ReductionOptions& options) {
  return jacobian_reduction<MatrixXd>(jacobian, outputs, options);
}

Geometry Geometry::from_row_major_jacobian(const Eigen::Ref<const RowMatrixXd>& jacobian, Index outputs,
                                           const ReductionOptions& options) {
  return jacobian_reduction<RowMatrixXd>(jacobian, outputs, options);
}

Geometry Geometry::from_gram(const Eigen::Ref<const MatrixXd>& gram, Index outputs,
                             const ReductionOptions& options) {
  options.validate();
  const std::string where = "Geometry::from_gram";
  detail::require(options.space != Space::parameter, where,
                  "the parameter-space reduction needs a Jacobian, not a Gram matrix");
  detail::require(gram.rows() == gram.cols(), where,
                  "the Gram matrix must be square, got " + std::to_string(gram.rows()) + " x " +
                      std::to_string(gram.cols()));
  check_outputs(gram.rows(), outputs, where);
  check_finite(gram, where);
  const Index nc = gram.rows(), n = nc / outputs;
  if (const int e = reduction_exponent(gram.cwiseAbs().maxCoeff(), 512) / 2) {
    check_memory(8.0 * static_cast<double>(nc) * static_cast<double>(nc),
                 "a rescaled copy of the Gram matrix (its entries are near 4^" + std::to_string(e) + ")",
                 options.memory_limit_bytes);
    Geometry g = from_gram(gram * std::ldexp(1.0, -2 * e), outputs, options);
    g.scale_units(e, where);
    return g;
  }
  const double scale = gram.cwiseAbs().maxCoeff();
  const double asym = (gram - gram.transpose()).cwiseAbs().maxCoeff();
  if (asym > options.gram_tolerance * scale)
    throw sgdstab::invalid_argument(where + ": the Gram matrix is not symmetric (max |K - K^T| = " +
                                    detail::fmt(asym) + " > gram_tolerance * max|K| = " +
                                    detail::fmt(options.gram_tolerance * scale) + ")");
  check_memory(eigen_bytes(nc) + 8.0 * nc * nc,
               "the reduction (eigendecomposition of a " + std::to_string(nc) + " x " +
                   std::to_string(nc) + " Gram)",
               options.memory_limit_bytes);
  MatrixXd a = 0.5 * (gram + gram.transpose());
  VectorXd w;
  eigendecompose(a, w, where);
  const double top = w(nc - 1);
  if (w(0) < -options.gram_tolerance * std::max(top, 0.0) || (top <= 0 && w(0) < 0))
    throw sgdstab::invalid_argument(
        where + ": the Gram matrix is not positive semidefinite (smallest eigenvalue " +
        detail::fmt(w(0)) + " < -gram_tolerance * lambda_max = " +
        detail::fmt(-options.gram_tolerance * top) + ")");
  const double negative_floor = std::max(0.0, -w(0));
  return from_eigen(a, w, n, outputs, 0, nc, options, negative_floor, Space::sample, {});
}

Geometry Geometry::from_factor(MatrixXd factor, VectorXd d, Index outputs, Index params) {
  const std::string where = "Geometry::from_factor";
  check_outputs(factor.rows(), outputs, where);
  detail::require(factor.cols() == d.size() && d.size() > 0, where,
                  "factor must have r = hessian_eigenvalues.size() >= 1 columns");
  for (Index k = 0; k < d.size(); ++k)
    detail::require(std::isfinite(d(k)) && d(k) > 0 && (k == 0 || d(k) <= d(k - 1)), where,
                    "hessian_eigenvalues must be positive, finite and descending");
  check_finite(factor, where);
  Geometry g;
  g.samples_ = factor.rows() / outputs;
  g.outputs_ = outputs;
  g.params_ = params;
  g.space_ = Space::sample;
  g.hessian_eigenvalues_ = std::move(d);
  g.factor_ = std::move(factor);
  return g;
}

MatrixXd Geometry::per_sample_hessian(Index i) const {
  detail::require(i >= 0 && i < samples_, "Geometry::per_sample_hessian",
                  "sample index must satisfy 0 <= i < n = " + std::to_string(samples_));
  const auto zi = factor_.middleRows(i * outputs_, outputs_);
  return zi.transpose() * zi;
}

}  // namespace sgdstab
