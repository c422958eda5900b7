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
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <complex>
#include <functional>
#include <string>

#include "foundations/interrupt_detail.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab::detail {

/// The largest eigenvalue of a symmetric operator, its unit eigenvector and
/// how it was obtained.
struct Eigenpair {
  double value = 0.0;
  Eigen::VectorXd vector;
  SolveReport report;
};

/// Bytes of Lanczos with ncv vectors on an m x m operator (the dense
/// method's: dense_bytes, foundations/linalg.hpp).
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

/// |op v - lambda v| / |lambda| for a unit v (one application).
double relative_residual(const FunctionOperator& op, const Eigen::VectorXd& v, double lambda);

/// The explicit m x m matrix of op, column by column (m applications).
Eigen::MatrixXd explicit_matrix(const FunctionOperator& op);

/// Largest eigenpair of the explicit matrix of op (m applications, LAPACK).
/// A LAPACK failure is Status::numerical_failure in the report.
Eigenpair dense_top(const FunctionOperator& op);

/// Spectra's implicitly restarted Lanczos for the largest algebraic
/// eigenvalue, from `start` (empty: Spectra's default start).
Eigenpair lanczos_top(FunctionOperator& op, const Eigen::VectorXd& start, Index ncv, Index max_restarts,
                      double tolerance);

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
/// quantity in messages. report.matvecs counts the applications made here.
/// Spectra is instantiated once, in eigensolve.cpp, on FunctionOperator.
/// \throws sgdstab::resource_error before allocating what would not fit.
Eigenpair top_eigenpair(FunctionOperator& op, const Eigen::VectorXd& start, const SolverOptions& opt,
                        double fixed_bytes, const std::string& what);

/// The same for any operator of the Spectra concept (`perform_op`, `rows`).
template <class Op>
Eigenpair top_eigenpair(Op& op, const Eigen::VectorXd& start, const SolverOptions& opt, double fixed_bytes,
                        const std::string& what) {
  FunctionOperator f(op.rows(), [&op](const double* x, double* y) { op.perform_op(x, y); });
  return top_eigenpair(f, start, opt, fixed_bytes, what);
}

/// The eigenvalue of a (not necessarily symmetric) operator that comes first
/// by `largest_real` (largest real part) or else largest modulus, by
/// Spectra's implicitly restarted Arnoldi (GenEigsSolver, nev = 1) from
/// `start`: the value, the real part of its eigenvector, and the report
/// (status converged or not_converged; iterations;
/// matvecs counted here). `value` is whatever Arnoldi holds when it did not
/// converge (0 when it holds nothing).
struct ComplexEigenpair {
  std::complex<double> value{0.0, 0.0};
  Eigen::VectorXd vector;
  Eigen::VectorXcd complex_vector;  ///< the whole (complex) eigenvector, unit norm
  SolveReport report;
};
ComplexEigenpair arnoldi_top(FunctionOperator& op, const Eigen::VectorXd& start, Index ncv, bool largest_real,
                             Index max_restarts, double tolerance);

/// Largest eigenvalue of a symmetric matrix held densely (lower triangle
/// read): LAPACK below `options.dense_max_dimension` rows, else Lanczos with
/// the fallbacks of top_eigenpair.
Eigenpair largest_eigenpair(const Eigen::MatrixXd& m, const SolverOptions& options, const std::string& what);

}  // namespace sgdstab::detail

