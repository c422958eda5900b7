#pragma once
/// \file stability.hpp
/// \brief Exact mean-square linear stability of SGD: the threshold eta*(B),
/// the spectral radius rho(T) and the curve B -> eta*(B).
///
/// Linearized SGD at an interpolating minimum is mean-square stable iff
/// rho(T) <= 1 on range(H), which holds iff eta <= eta*(B) with
///   eta*(B) = 1 / lambda_max(A^{-1/2} Q A^{-1/2})      (theory/threshold.md, eq. 5)
/// (A(S) = HS + SH, Q(S) = E[H_xi S H_xi]; see moment_operator.hpp). The
/// stable set is the interval (0, eta*]; eta* is non-decreasing in B and
/// equals 2 / lambda_max(H) at B = n without replacement.
///
/// Two methods: `dense` builds the r(r+1)/2-square matrix and calls LAPACK;
/// `lanczos` is matrix-free (O(n c r^2) flops per application): for eta* the
/// thick-restart Lanczos of region.hpp, which checks convergence after every
/// application and stops on an error bound (theory/region.md, section 4);
/// for rho(T) Spectra's implicitly restarted Lanczos. `automatic` picks dense
/// for small r. A Lanczos run that does not converge falls back to the dense
/// method when that fits in memory; if all fail the result says
/// converged = false and carries a message: the number is then not to be
/// trusted. threshold_curve shares one subspace across all B (region.hpp).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, /*outputs=*/1);
/// auto res = sgdstab::stability_threshold(g, /*batch=*/8);
/// if (!res.converged()) throw std::runtime_error(res.message);
/// std::cout << "eta* = " << res.eta_star << "\n";
/// \endcode
#include <Eigen/Core>
#include <limits>
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {

// Method (automatic | dense | lanczos) and Status are in types.hpp.

/// Options of the eigensolvers. validate() throws sgdstab::invalid_argument.
struct SolverOptions {
  Method method = Method::automatic;
  /// Relative accuracy of the eigenvalue (Spectra: residual <= tol * |lambda|).
  double tolerance = 1e-10;
  /// Lanczos restarts allowed per attempt.
  Index max_iterations = 1000;
  /// Lanczos subspace dimension; 0 = automatic, m = r(r+1)/2: for eta*
  /// min(m, 16), for curves and regions up to min(m, 64) vectors as memory allows (theory/region.md,
  /// section 5); for rho(T) and the bounds (Spectra, which checks convergence
  /// once per restart) min(m, 12).
  Index subspace_dimension = 0;
  /// automatic uses the dense method when m <= this.
  Index dense_max_dimension = 600;
  /// The dense method is a fallback for a failed Lanczos only when m <= this.
  Index dense_fallback_max_dimension = 8000;
  /// Also return the top eigen-direction (an r x r PSD matrix).
  bool want_direction = false;
  /// Memory the solver may use, bytes; 0 = what the system has available.
  double memory_limit_bytes = 0.0;
  /// Where the operator applications of eta* (threshold, curve, region) run
  /// (device.hpp): cpu, cuda (an error without a usable GPU) or automatic
  /// (the GPU when usable and the problem fits, else the CPU).
  Device device = Device::automatic;
  /// eta* (threshold, curve, region) on the CPU when r >= mixed_precision_min_rank:
  /// the first applications of R in single precision (twice as fast), until
  /// the residual is near what single precision resolves; then the kept
  /// vectors are re-applied in double and the result is certified in double
  /// precision as always (theory/region.md, section 7). false: double throughout.
  bool mixed_precision = true;
  Index mixed_precision_min_rank = 512;
  void validate() const;
};

/// What an eigensolve did. A number whose status is not Status::converged
/// is not trustworthy.
struct SolveReport {
  Status status = Status::not_converged;
  bool converged() const { return status == Status::converged; }
  Index iterations = 0;   ///< Lanczos restarts (1 for dense)
  Index matvecs = 0;      ///< operator applications, residual check included
  /// Of which in single precision (eta*'s mixed-precision start,
  /// theory/region.md section 7); none of them certifies anything.
  Index single_precision_matvecs = 0;
  double residual = 0.0;  ///< |M v - lambda v| / |lambda| for the returned unit v
  /// Relative a posteriori bound on the eigenvalue's error, (lambda_max - lambda) / lambda
  /// (the threshold: eta* lies in [eta_star / (1 + error_bound), eta_star]); NaN where
  /// the solver gives none (the spectral radius).
  double error_bound = std::numeric_limits<double>::quiet_NaN();
  Method method = Method::automatic;  ///< the method that produced the value
  Device device = Device::cpu;        ///< where the operator applications ran (device.hpp)
  std::string message;    ///< what happened (fallbacks, failures)
};

/// eta*(B) and its provenance.
struct ThresholdResult {
  double eta_star = 0.0;      ///< stable iff lr <= eta_star (loss convention 1/2, mean)
  double pencil_max = 0.0;    ///< lambda_max(A^{-1/2} Q A^{-1/2}) = 1 / eta_star
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  SolveReport report;
  /// Top generalized eigen-direction S* (r x r, PSD, unit Frobenius norm,
  /// reduced coordinates) when SolverOptions::want_direction; else empty.
  Eigen::MatrixXd direction;
  bool converged() const { return report.converged(); }
  Status status() const { return report.status; }
};

/// rho(T) on range(H) and its provenance.
struct RadiusResult {
  double rho = 0.0;  ///< spectral radius of T = largest eigenvalue (T is positive, self-adjoint)
  double lr = 0.0;
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  SolveReport report;
  Eigen::MatrixXd direction;  ///< top eigenvector of T (PSD) on request
  bool converged() const { return report.converged(); }
  Status status() const { return report.status; }
};

/// The exact threshold eta*(B). \throws sgdstab::invalid_argument unless
/// 1 <= batch <= n; sgdstab::resource_error when it would not fit in memory.
ThresholdResult stability_threshold(const Geometry& geometry, Index batch,
                                    Sampling sampling = Sampling::without_replacement,
                                    const SolverOptions& options = {});

/// rho(T) at learning rate lr. \throws sgdstab::invalid_argument unless
/// lr > 0 is finite and 1 <= batch <= n.
RadiusResult spectral_radius(const Geometry& geometry, double lr, Index batch,
                             Sampling sampling = Sampling::without_replacement,
                             const SolverOptions& options = {});

/// eta*(B) for each B (each Lanczos run warm-started from the previous one).
std::vector<ThresholdResult> threshold_curve(const Geometry& geometry,
                                             const std::vector<Index>& batches,
                                             Sampling sampling = Sampling::without_replacement,
                                             const SolverOptions& options = {});

/// Powers of two below n, then n: {1, 2, 4, ..., n}.
std::vector<Index> default_batches(Index samples);

}  // namespace sgdstab
