#pragma once
// Internal: the one eigensolver path of the library. Every largest-eigenvalue
// computation (the threshold and spectral radius, theory/threshold.md §5-6;
// the bounds table, theory/bounds.md §6; the sampled operator of the Monte
// Carlo check, theory/montecarlo.md eq. 4) goes through these functions,
// driven by SolverOptions, and reports a SolveReport whose Status says
// whether the number can be trusted.
//
// Operators follow Spectra's concept: `using Scalar = double`, rows(),
// cols(), perform_op(const double* x, double* y) const, symmetric.
#include <Spectra/SymEigsSolver.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "interrupt_detail.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::detail {

/// The largest eigenvalue of a symmetric operator, its unit eigenvector and
/// how it was obtained.
struct Eigenpair {
  double value = 0.0;
  Eigen::VectorXd vector;
  SolveReport report;
};

/// Full symmetric eigendecomposition (LAPACK dsyevd, ascending; eigenvectors
/// overwrite `a`). \throws sgdstab::numerical_error naming `what` when LAPACK fails.
void symmetric_eigen_or_throw(Eigen::MatrixXd& a, Eigen::VectorXd& evals, const std::string& what);

/// Bytes of the dense method on an m x m operator, and of Lanczos with ncv vectors.
double dense_bytes(Index m);
double lanczos_bytes(Index m, Index ncv);

/// An operator y = f(x) of dimension n as a Spectra operator that counts its applications.
class FunctionOperator {
 public:
  using Scalar = double;
  FunctionOperator(Index n, std::function<void(const double*, double*)> f) : n_(n), f_(std::move(f)) {}
  Index rows() const { return n_; }
  Index cols() const { return n_; }
  void perform_op(const double* x, double* y) const {
    throw_if_interrupted("eigensolver");
    f_(x, y);
    ++applications_;
  }
  Index applications() const { return applications_; }

 private:
  Index n_;
  std::function<void(const double*, double*)> f_;
  mutable Index applications_ = 0;
};

/// |op v - lambda v| / |lambda| for a unit v.
template <class Op>
double relative_residual(const Op& op, const Eigen::VectorXd& v, double lambda) {
  Eigen::VectorXd y(v.size());
  op.perform_op(v.data(), y.data());
  return (y - lambda * v).norm() / std::max(std::abs(lambda), 1e-300);
}

/// Largest eigenpair of the explicit matrix of op (m applications, LAPACK).
/// A LAPACK failure is Status::numerical_failure in the report.
template <class Op>
Eigenpair dense_top(const Op& op) {
  const Index m = op.rows();
  Eigen::MatrixXd mat(m, m);
  Eigen::VectorXd e = Eigen::VectorXd::Zero(m);
  for (Index j = 0; j < m; ++j) {
    e(j) = 1.0;
    op.perform_op(e.data(), mat.col(j).data());
    e(j) = 0.0;
  }
  mat = 0.5 * (mat + mat.transpose()).eval();
  Eigenpair out;
  out.report.method = Method::dense;
  out.report.iterations = 1;
  Eigen::VectorXd w;
  try {
    symmetric_eigen_or_throw(mat, w, "dense eigensolver");
  } catch (const std::exception& e) {
    out.report.status = Status::numerical_failure;
    out.report.message = e.what();
    return out;
  }
  out.value = w(m - 1);
  out.vector = mat.col(m - 1);
  out.report.status = Status::converged;
  return out;
}

/// Spectra's implicitly restarted Lanczos for the largest algebraic
/// eigenvalue, from `start` (empty: Spectra's default start).
template <class Op>
Eigenpair lanczos_top(Op& op, const Eigen::VectorXd& start, Index ncv, Index max_restarts, double tolerance) {
  Eigenpair out;
  out.report.method = Method::lanczos;
  Spectra::SymEigsSolver<Op> eigs(op, 1, ncv);
  if (start.size() == op.rows()) eigs.init(start.data());
  else eigs.init();
  eigs.compute(Spectra::SortRule::LargestAlge, max_restarts, tolerance);
  out.report.iterations = eigs.num_iterations();
  if (eigs.info() == Spectra::CompInfo::Successful) {
    out.value = eigs.eigenvalues()(0);
    out.vector = eigs.eigenvectors().col(0);
    out.report.status = Status::converged;
  } else {
    out.report.status = eigs.info() == Spectra::CompInfo::NotConverging ? Status::not_converged
                                                                        : Status::numerical_failure;
    out.report.message = "Lanczos (ncv = " + std::to_string(ncv) + ") did not converge in " +
                         std::to_string(max_restarts) + " restarts";
  }
  return out;
}

/// The method `options` selects for dimension m (Lanczos needs m >= 3).
Method resolve_method(const SolverOptions& options, Index m);

/// Whether a dense m x m solve fits beside `fixed_bytes` under the options' memory limit.
bool dense_fits(Index m, const SolverOptions& options, double fixed_bytes);

/// Marks a converged pair whose true residual exceeds max(1e3 tol, 1e-8) as
/// not converged (Spectra's convergence test uses Ritz estimates).
void check_residual(Eigenpair& pair, double residual, double tolerance, std::string& history);

/// The top eigenpair with fallbacks: Lanczos -> Lanczos with twice the
/// subspace and restarts -> dense (when m <= dense_fallback_max_dimension and
/// it fits in memory), then a residual check of the returned pair.
/// `fixed_bytes` is memory the caller already holds; `what` names the
/// quantity in messages. Op must also provide applications().
/// \throws sgdstab::resource_error before allocating what would not fit.
template <class Op>
Eigenpair top_eigenpair(Op& op, const Eigen::VectorXd& start, const SolverOptions& opt, double fixed_bytes,
                        const std::string& what) {
  const Index m = op.rows();
  const Index before = op.applications();
  Eigenpair out;
  std::string history;
  if (resolve_method(opt, m) == Method::lanczos) {
    const Index ncv = opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, 12);
    check_memory(fixed_bytes + lanczos_bytes(m, ncv), what + " (Lanczos, ncv = " + std::to_string(ncv) + ")",
                 opt.memory_limit_bytes);
    out = lanczos_top(op, start, ncv, opt.max_iterations, opt.tolerance);
    if (!out.report.converged() && ncv < m) {
      history = out.report.message + "; ";
      const Index ncv2 = std::min(m, 2 * ncv);
      check_memory(fixed_bytes + lanczos_bytes(m, ncv2), what + " (Lanczos, ncv = " + std::to_string(ncv2) + ")",
                   opt.memory_limit_bytes);
      out = lanczos_top(op, start, ncv2, 2 * opt.max_iterations, opt.tolerance);
    }
    if (!out.report.converged()) {
      history += out.report.message;
      if (m <= opt.dense_fallback_max_dimension && dense_fits(m, opt, fixed_bytes)) {
        out = dense_top(op);
        history += "; fell back to the dense method";
      } else {
        history += "; the dense fallback is too large (m = " + std::to_string(m) + ")";
      }
    }
  } else {
    check_memory(fixed_bytes + dense_bytes(m), what + " (dense " + std::to_string(m) + " x " + std::to_string(m) + " matrix)",
                 opt.memory_limit_bytes);
    out = dense_top(op);
  }
  if (out.report.converged()) check_residual(out, relative_residual(op, out.vector, out.value), opt.tolerance, history);
  out.report.matvecs = op.applications() - before;
  if (!history.empty()) {
    if (!out.report.converged() && out.report.message.size() && history.find(out.report.message) == std::string::npos)
      history += "; " + out.report.message;
    out.report.message = history;
  } else if (out.report.converged()) {
    out.report.message = "converged";
  }
  return out;
}

/// Largest eigenvalue of a symmetric matrix held densely (lower triangle
/// read): LAPACK below `options.dense_max_dimension` rows, else Lanczos with
/// the fallbacks of top_eigenpair.
Eigenpair largest_eigenpair(const Eigen::MatrixXd& m, const SolverOptions& options, const std::string& what);

/// Top eigenpair of a positive (PSD-cone preserving) operator on symmetric
/// r x r matrices that need not be self-adjoint (`apply(S, transposed)` gives
/// T(S) or its adjoint), by power iteration from I/sqrt(r). The returned
/// vector is the packed-free r*r column-major matrix.
Eigenpair power_top(const std::function<Eigen::MatrixXd(const Eigen::MatrixXd&, bool)>& apply, Index r,
                    bool transposed, double tolerance, Index max_iterations);

}  // namespace sgdstab::detail

