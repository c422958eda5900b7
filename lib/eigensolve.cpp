// The one eigensolver path (lib/eigensolve.hpp): theory/threshold.md §5-6.
#include "eigensolve.hpp"

#include "check.hpp"
#include "linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::detail {

using Eigen::MatrixXd;
using Eigen::VectorXd;

void symmetric_eigen_or_throw(MatrixXd& a, VectorXd& evals, const std::string& what) {
  const int info = symmetric_eigen(a, evals);
  if (info != 0)
    throw numerical_error(what + ": LAPACK dsyevd failed (info = " + std::to_string(info) + ") on a " +
                          std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + " matrix" +
                          (a.allFinite() ? "" : " with NaN or Inf entries"));
}

double dense_bytes(Index m) { return 8.0 * 3.2 * static_cast<double>(m) * static_cast<double>(m); }

double lanczos_bytes(Index m, Index ncv) { return 8.0 * (static_cast<double>(ncv) + 4.0) * static_cast<double>(m); }

Method resolve_method(const SolverOptions& options, Index m) {
  if (m < 3) return Method::dense;  // Lanczos needs nev < ncv <= m with nev = 1
  if (options.method != Method::automatic) return options.method;
  return m <= options.dense_max_dimension ? Method::dense : Method::lanczos;
}

bool dense_fits(Index m, const SolverOptions& options, double fixed_bytes) {
  const double limit = options.memory_limit_bytes > 0 ? options.memory_limit_bytes
                                                      : static_cast<double>(available_memory_bytes());
  return limit <= 0 || fixed_bytes + dense_bytes(m) <= limit;
}

void check_residual(Eigenpair& pair, double residual, double tolerance, std::string& history) {
  pair.report.residual = residual;
  if (residual <= std::max(1e3 * tolerance, 1e-8)) return;
  pair.report.status = Status::not_converged;
  history += (history.empty() ? "" : "; ") + std::string("residual check failed (") + fmt(residual) + ")";
}

Eigenpair largest_eigenpair(const MatrixXd& m, const SolverOptions& options, const std::string& what) {
  const Index n = m.rows();
  FunctionOperator op(n, [&m, n](const double* x, double* y) {
    VectorXd::Map(y, n).noalias() = m.selfadjointView<Eigen::Lower>() * VectorXd::Map(x, n);
  });
  if (resolve_method(options, n) == Method::dense) {  // LAPACK on m itself, not on n applications
    Eigenpair out;
    out.report.method = Method::dense;
    out.report.iterations = 1;
    MatrixXd a = m;
    VectorXd w;
    try {
      symmetric_eigen_or_throw(a, w, what);
    } catch (const numerical_error& e) {
      out.report.status = e.status();
      out.report.message = e.what();
      return out;
    }
    out.value = w(n - 1);
    out.vector = a.col(n - 1);
    out.report.status = Status::converged;
    out.report.residual = relative_residual(op, out.vector, out.value);
    out.report.message = "converged";
    return out;
  }
  return top_eigenpair(op, VectorXd(), options, 8.0 * static_cast<double>(m.size()), what);
}

Eigenpair power_top(const std::function<MatrixXd(const MatrixXd&, bool)>& apply, Index r, bool transposed,
                    double tolerance, Index max_iterations) {
  MatrixXd s = MatrixXd::Identity(r, r) / std::sqrt(static_cast<double>(r));
  Eigenpair out;
  out.report.method = Method::automatic;  // power iteration: no Method value of its own
  out.report.status = Status::not_converged;
  for (Index it = 0; it < max_iterations; ++it) {
    MatrixXd ts = apply(s, transposed);
    ++out.report.matvecs;
    out.report.iterations = it + 1;
    const double lambda = (s.array() * ts.array()).sum();
    const double norm = ts.norm();
    out.value = lambda;
    out.report.residual = (ts - lambda * s).norm() / std::max(std::abs(lambda), 1e-300);
    if (!(norm > 0.0) || !std::isfinite(norm)) {
      out.report.status = Status::numerical_failure;
      out.report.message = "power iteration: the iterate vanished or overflowed";
      break;
    }
    s = (ts + ts.transpose()) / (2.0 * norm);  // the operator acts on symmetric matrices only
    if (out.report.residual <= tolerance) {
      out.report.status = Status::converged;
      break;
    }
  }
  if (out.report.status == Status::not_converged)
    out.report.message = "power iteration did not converge in " + std::to_string(max_iterations) + " steps";
  out.vector = VectorXd::Map(s.data(), s.size());
  return out;
}

}  // namespace sgdstab::detail
