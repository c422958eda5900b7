// The one eigensolver path (lib/solvers/eigensolve.hpp): theory/threshold.md §5-6.
#include "solvers/eigensolve.hpp"

#include <Spectra/GenEigsSolver.h>
#include <Spectra/SymEigsSolver.h>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"

namespace sgdstab::detail {

using Eigen::MatrixXd;
using Eigen::VectorXd;

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

double relative_residual(const FunctionOperator& op, const VectorXd& v, double lambda) {
  VectorXd y(v.size());
  op.perform_op(v.data(), y.data());
  return (y - lambda * v).norm() / std::max(std::abs(lambda), 1e-300);
}

MatrixXd explicit_matrix(const FunctionOperator& op) {
  const Index m = op.rows();
  MatrixXd mat(m, m);
  VectorXd e = VectorXd::Zero(m);
  for (Index j = 0; j < m; ++j) {
    e(j) = 1.0;
    op.perform_op(e.data(), mat.col(j).data());
    e(j) = 0.0;
  }
  return mat;
}

Eigenpair dense_top(const FunctionOperator& op) {
  const Index m = op.rows();
  MatrixXd mat = explicit_matrix(op);
  mat = 0.5 * (mat + mat.transpose()).eval();
  Eigenpair out;
  out.report.method = Method::dense;
  out.report.iterations = 1;
  VectorXd w;
  try {
    symmetric_eigen_or_throw(mat, w, "dense eigensolver");
  } catch (const std::exception& ex) {
    out.report.status = Status::numerical_failure;
    out.report.message = ex.what();
    return out;
  }
  out.value = w(m - 1);
  out.vector = mat.col(m - 1);
  out.report.status = Status::converged;
  return out;
}

Eigenpair lanczos_top(FunctionOperator& op, const VectorXd& start, Index ncv, Index max_restarts, double tolerance) {
  Eigenpair out;
  out.report.method = Method::lanczos;
  Spectra::SymEigsSolver<FunctionOperator> eigs(op, 1, ncv);
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

Eigenpair top_eigenpair(FunctionOperator& op, const VectorXd& start, const SolverOptions& opt, double fixed_bytes,
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

ComplexEigenpair arnoldi_top(FunctionOperator& op, const VectorXd& start, Index ncv, bool largest_real,
                             Index max_restarts, double tolerance) {
  const Index before = op.applications();
  ComplexEigenpair out;
  out.report.method = Method::lanczos;
  Spectra::GenEigsSolver<FunctionOperator> eigs(op, 1, ncv);
  eigs.init(start.data());
  const Index nconv = eigs.compute(largest_real ? Spectra::SortRule::LargestReal : Spectra::SortRule::LargestMagn,
                                   max_restarts, tolerance);
  out.report.iterations = eigs.num_iterations();
  out.report.matvecs = op.applications() - before;
  // The value only on success (an unconverged one is no number to report).
  if (eigs.info() == Spectra::CompInfo::Successful && nconv >= 1) {
    out.value = eigs.eigenvalues()(0);
    out.complex_vector = eigs.eigenvectors().col(0);
    out.vector = out.complex_vector.real();
    out.report.status = Status::converged;
  } else {
    out.report.status = Status::not_converged;
  }
  return out;
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

}  // namespace sgdstab::detail
