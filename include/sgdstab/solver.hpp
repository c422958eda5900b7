#pragma once
/// \file solver.hpp
/// \brief The types every solver shares, below the solvers in the layers:
/// the eigensolver options (SolverOptions), what a solve did (SolveReport)
/// and the momentum of SGD (Momentum). Headers that only pass these along
/// include this one, not the solvers' headers (stability.hpp, momentum.hpp).
#include <limits>
#include <string>

#include "sgdstab/types.hpp"

namespace sgdstab {

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
  /// the first applications of R for each point in single precision (twice
  /// as fast), until the residual is near what single precision resolves;
  /// then the kept vectors are re-applied in double and every point is certified in double
  /// precision as always (theory/region.md, section 7). false: double throughout.
  bool mixed_precision = true;
  Index mixed_precision_min_rank = 512;
  void validate() const;
};

/// What a computation did. Every result of the library that can fail to
/// converge carries one as `report`, read the same way (in the spirit of
/// Ceres' Summary): `result.status()` / `result.converged()` and
/// `result.report.message` say whether the number is to be trusted and why;
/// the counters say what it cost. A number whose status is not
/// Status::converged is not trustworthy. Fields a routine has no use for
/// keep their defaults (its header says which it fills).
struct SolveReport {
  Status status = Status::not_converged;
  bool converged() const { return status == Status::converged; }
  std::string message;    ///< what happened (fallbacks, failures)
  /// The routine's outer iterations: Lanczos restarts (1 for dense), kappa
  /// evaluations (momentum eta*), Gauss-Newton iterations or GD/SGD steps,
  /// Lanczos steps (Hessian-vector products) of the CNN module.
  Index iterations = 0;
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
  /// Wall-clock seconds of the call that produced the result (for results
  /// made together, such as a curve's points or a region's, the whole call's).
  double seconds = 0.0;
  /// Of which spent applying the operator (0 where not measured).
  double apply_seconds = 0.0;
};

/// The part every result shares: its report, read the same way everywhere.
struct Result {
  SolveReport report;
  bool converged() const { return report.converged(); }
  Status status() const { return report.status; }
};

/// PyTorch's torch.optim.SGD(momentum=beta, nesterov=..., dampening=0).
struct Momentum {
  double beta = 0.0;      ///< in [0, 1)
  bool nesterov = false;  ///< Nesterov's variant (PyTorch's nesterov=True)
  /// \throws sgdstab::invalid_argument unless 0 <= beta < 1.
  void validate() const;
};

}  // namespace sgdstab
