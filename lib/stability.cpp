// Threshold eta*(B): theory/threshold.md. Spectral radius: theory/spectral_radius.md.
#include "sgdstab/stability.hpp"

#include <Spectra/SymEigsSolver.h>

#include <algorithm>
#include <cmath>

#include "linalg.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/memory.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

std::string to_string(Method method) {
  switch (method) {
    case Method::automatic: return "automatic";
    case Method::dense: return "dense";
    case Method::lanczos: return "lanczos";
  }
  return "unknown";
}

Method parse_method(const std::string& text) {
  if (text == "automatic") return Method::automatic;
  if (text == "dense") return Method::dense;
  if (text == "lanczos") return Method::lanczos;
  throw sgdstab::invalid_argument("method: expected one of automatic|dense|lanczos, got '" + text +
                                  "'");
}

void SolverOptions::validate() const {
  const std::string where = "SolverOptions";
  detail::require(std::isfinite(tolerance) && tolerance > 0 && tolerance < 0.1, where,
                  "tolerance must satisfy 0 < tolerance < 0.1, got " + detail::fmt(tolerance));
  detail::require(max_iterations >= 1, where,
                  "max_iterations must be >= 1, got " + std::to_string(max_iterations));
  detail::require(subspace_dimension == 0 || subspace_dimension >= 3, where,
                  "subspace_dimension must be 0 (automatic) or >= 3, got " +
                      std::to_string(subspace_dimension));
  detail::require(dense_max_dimension >= 0 && dense_fallback_max_dimension >= 0, where,
                  "dense dimensions must be >= 0");
  detail::require(std::isfinite(memory_limit_bytes) && memory_limit_bytes >= 0, where,
                  "memory_limit_bytes must be >= 0, got " + detail::fmt(memory_limit_bytes));
}

namespace {

struct Eigenpair {
  double value = 0;
  VectorXd vector;
  SolveReport report;
};

template <class Op>
double residual_of(const Op& op, const VectorXd& v, double lambda) {
  VectorXd y(v.size());
  op.perform_op(v.data(), y.data());
  return (y - lambda * v).norm() / std::max(std::abs(lambda), 1e-300);
}

double dense_bytes(Index m) { return 8.0 * 3.2 * static_cast<double>(m) * static_cast<double>(m); }
double lanczos_bytes(Index m, Index ncv) {
  return 8.0 * (static_cast<double>(ncv) + 4.0) * static_cast<double>(m);
}

// Largest eigenpair of the explicit matrix of op (theory/threshold.md, section 5).
template <class Op>
Eigenpair dense_top(const Op& op) {
  const Index m = op.rows();
  MatrixXd mat(m, m);
  VectorXd e = VectorXd::Zero(m);
  for (Index j = 0; j < m; ++j) {
    e(j) = 1.0;
    op.perform_op(e.data(), mat.col(j).data());
    e(j) = 0.0;
  }
  mat = 0.5 * (mat + mat.transpose()).eval();
  VectorXd w;
  const int info = detail::symmetric_eigen(mat, w);
  Eigenpair out;
  out.report.method = Method::dense;
  out.report.iterations = 1;
  if (info != 0) {
    out.report.message = "dense eigensolver (LAPACK dsyevd) failed, info = " + std::to_string(info);
    return out;
  }
  out.value = w(m - 1);
  out.vector = mat.col(m - 1);
  out.report.converged = true;
  return out;
}

template <class Op>
Eigenpair lanczos_top(Op& op, const VectorXd& start, Index ncv, Index maxit, double tol) {
  Eigenpair out;
  out.report.method = Method::lanczos;
  Spectra::SymEigsSolver<Op> eigs(op, 1, ncv);
  eigs.init(start.data());
  eigs.compute(Spectra::SortRule::LargestAlge, maxit, tol);
  out.report.iterations = eigs.num_iterations();
  if (eigs.info() == Spectra::CompInfo::Successful) {
    out.value = eigs.eigenvalues()(0);
    out.vector = eigs.eigenvectors().col(0);
    out.report.converged = true;
  } else {
    out.report.message = "Lanczos (ncv = " + std::to_string(ncv) + ") did not converge in " +
                         std::to_string(maxit) + " restarts";
  }
  return out;
}

// The top eigenpair of a symmetric Spectra operator with fallbacks:
// Lanczos -> Lanczos with twice the subspace -> dense (when it fits).
template <class Op>
Eigenpair top_eigenpair(Op& op, const VectorXd& start, const SolverOptions& opt,
                        double fixed_bytes, const std::string& what) {
  const Index m = op.rows();
  const Index before = op.applications();
  Method method = opt.method;
  if (method == Method::automatic) method = (m <= opt.dense_max_dimension) ? Method::dense : Method::lanczos;
  if (m < 3) method = Method::dense;  // Lanczos needs nev < ncv <= m with nev = 1
  Eigenpair out;
  std::string history;
  if (method == Method::lanczos) {
    Index ncv = opt.subspace_dimension > 0 ? std::min(opt.subspace_dimension, m) : std::min<Index>(m, 12);
    check_memory(fixed_bytes + lanczos_bytes(m, ncv), what + " (Lanczos, ncv = " + std::to_string(ncv) + ")",
                 opt.memory_limit_bytes);
    out = lanczos_top(op, start, ncv, opt.max_iterations, opt.tolerance);
    if (!out.report.converged && ncv < m) {
      history = out.report.message + "; ";
      const Index ncv2 = std::min(m, 2 * ncv);
      check_memory(fixed_bytes + lanczos_bytes(m, ncv2), what + " (Lanczos, ncv = " + std::to_string(ncv2) + ")",
                   opt.memory_limit_bytes);
      out = lanczos_top(op, start, ncv2, 2 * opt.max_iterations, opt.tolerance);
    }
    if (!out.report.converged) {
      history += out.report.message;
      const double limit = opt.memory_limit_bytes > 0 ? opt.memory_limit_bytes
                                                      : static_cast<double>(available_memory_bytes());
      if (m <= opt.dense_fallback_max_dimension && (limit <= 0 || fixed_bytes + dense_bytes(m) <= limit)) {
        out = dense_top(op);
        history += "; fell back to the dense method";
      } else {
        history += "; the dense fallback is too large (m = " + std::to_string(m) + ")";
      }
    }
  } else {
    check_memory(fixed_bytes + dense_bytes(m),
                 what + " (dense " + std::to_string(m) + " x " + std::to_string(m) + " matrix)",
                 opt.memory_limit_bytes);
    out = dense_top(op);
  }
  if (out.report.converged) {
    out.report.residual = residual_of(op, out.vector, out.value);
    // A converged Lanczos answer whose true residual is far off is not trusted.
    if (!(out.report.residual <= std::max(1e3 * opt.tolerance, 1e-8))) {
      out.report.converged = false;
      history += (history.empty() ? "" : "; ") + std::string("residual check failed (") +
                 detail::fmt(out.report.residual) + ")";
    }
  }
  out.report.matvecs = op.applications() - before;
  out.report.message = history.empty() ? (out.report.converged ? "converged" : out.report.message)
                                       : history;
  return out;
}

// A PSD start with positive overlap with the (PSD) top eigenvector:
// theory/threshold.md, section 6.
VectorXd identity_start(const VectorXd& diag_weights) {
  const VectorXd x = pack(MatrixXd(diag_weights.asDiagonal()));
  return x / x.norm();
}

MatrixXd unit_psd(MatrixXd s) {
  if (s.trace() < 0) s = -s;
  return s / s.norm();
}

ThresholdResult threshold_with_start(const Geometry& g, Index batch, Sampling sampling,
                                     const SolverOptions& opt, const VectorXd* warm, VectorXd* vec_out) {
  opt.validate();
  SecondMomentOperator t(g, batch, sampling);
  PencilOperator op(t);
  const VectorXd& d = g.hessian_eigenvalues();
  VectorXd start = identity_start((2.0 * d).cwiseSqrt());  // A^{1/2}(I)
  if (warm != nullptr && warm->size() == start.size()) {
    start = *warm / warm->norm() + 0.1 * start;
    start /= start.norm();
  }
  Eigenpair e = top_eigenpair(op, start, opt, t.workspace_bytes(), "eta*(B = " + std::to_string(batch) + ")");
  ThresholdResult res;
  res.batch = batch;
  res.sampling = sampling;
  res.pencil_max = e.value;
  res.eta_star = e.value > 0 ? 1.0 / e.value : 0.0;
  res.report = e.report;
  if (e.value <= 0 && res.report.converged) {
    res.report.converged = false;
    res.report.message = "the pencil's largest eigenvalue is not positive";
  }
  if (opt.want_direction && e.vector.size() > 0) {
    MatrixXd s = unpack(e.vector, g.rank());
    s.array() *= op.weights().array();  // S* = A^{-1/2} y
    res.direction = unit_psd(s);
  }
  if (vec_out != nullptr) *vec_out = e.vector;
  return res;
}

}  // namespace

ThresholdResult stability_threshold(const Geometry& g, Index batch, Sampling sampling,
                                    const SolverOptions& opt) {
  return threshold_with_start(g, batch, sampling, opt, nullptr, nullptr);
}

RadiusResult spectral_radius(const Geometry& g, double lr, Index batch, Sampling sampling,
                             const SolverOptions& opt) {
  opt.validate();
  SecondMomentOperator t(g, batch, sampling);
  TransitionOperator op(t, lr);
  const VectorXd start = identity_start(VectorXd::Ones(g.rank()));
  Eigenpair e = top_eigenpair(op, start, opt, t.workspace_bytes(), "rho(T)");
  RadiusResult res;
  res.rho = e.value;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report = e.report;
  if (opt.want_direction && e.vector.size() > 0) res.direction = unit_psd(unpack(e.vector, g.rank()));
  return res;
}

std::vector<ThresholdResult> threshold_curve(const Geometry& g, const std::vector<Index>& batches,
                                             Sampling sampling, const SolverOptions& opt) {
  detail::require(!batches.empty(), "threshold_curve", "the list of batch sizes is empty");
  for (Index b : batches)
    detail::require(b >= 1 && b <= g.samples(), "threshold_curve",
                    "batch size B must satisfy 1 <= B <= n = " + std::to_string(g.samples()) +
                        ", got B = " + std::to_string(b));
  std::vector<ThresholdResult> out;
  VectorXd previous;
  for (Index b : batches) {
    VectorXd vec;
    out.push_back(threshold_with_start(g, b, sampling, opt, previous.size() ? &previous : nullptr, &vec));
    if (out.back().converged()) previous = vec;
  }
  return out;
}

std::vector<Index> default_batches(Index n) {
  detail::require(n >= 1, "default_batches", "samples must be >= 1, got " + std::to_string(n));
  std::vector<Index> out;
  for (Index b = 1; b < n; b *= 2) out.push_back(b);
  out.push_back(n);
  return out;
}

}  // namespace sgdstab
