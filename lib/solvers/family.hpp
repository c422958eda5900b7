#pragma once
// Internal, part of the eigensolver module (eigensolve.hpp): the largest
// eigenvalue of every member of the family
//   M(s) = (1 - s) diag(p) + s R,   s in (0, 1],
// from one shared subspace (theory/region.md, sections 3-5). R is symmetric
// positive semidefinite and given only through its applications; diag(p) is
// free. The subspace V keeps its images W = R V, so the Rayleigh-Ritz value
// and the exact residual of every member cost no further application of R.
//
// Per member the solver is a thick-restart Lanczos/Davidson method with full
// reorthogonalization and a convergence test after every application (the
// expansion vector is the member's Ritz residual divided by theta minus the
// free diagonal (1 - s) p: plain Lanczos at s = 1, a diagonally preconditioned
// Davidson step as s -> 0); members are solved one after the other in the
// same subspace, each starting from what the others left in it. The optional
// single-precision phase (theory/region.md, section 7) runs in a float
// subspace that is not reorthogonalized (its Gram matrix is kept instead);
// everything certified comes from the double subspace.
#include <Eigen/Core>
#include <functional>
#include <string>
#include <vector>

#include "operators/apply.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab::detail {

/// What the solver learned about one member M(s).
struct FamilyMember {
  double s = 0.0;
  /// A Ritz value: the Rayleigh quotient of a unit vector v, so value <= lambda_max(M(s)).
  double value = 0.0;
  /// lambda_max(M(s)) - value <= error (a posteriori bound, theory/region.md section 4).
  double error = 0.0;
  double residual = 0.0;  ///< |M(s) v - value v|
  /// v'diag(p)v and v'Rv: the line (1 - t) tangent_p + t tangent_r lies below
  /// lambda_max(M(t)) for every t (a Rayleigh quotient), and touches it at s.
  double tangent_p = 0.0, tangent_r = 0.0;
  Status status = Status::not_converged;
  Method method = Method::lanczos;
  Index matvecs = 0;  ///< applications of R spent while this member was the target
  Eigen::VectorXd vector;  ///< the unit Ritz vector, when asked for
  std::string message;
  bool converged() const { return status == Status::converged; }
};

struct FamilyResult {
  std::vector<FamilyMember> members;  ///< in the order of the requested s
  Index matvecs = 0;                  ///< applications of R in all
  Index low_precision_matvecs = 0;    ///< of which in single precision (theory/region.md, section 7)
  double apply_seconds = 0.0;         ///< wall time inside those applications
  Index restarts = 0;
  Index subspace_dimension = 0;  ///< the most vectors kept at once (0 for dense)
  Method method = Method::lanczos;
  Device device = Device::cpu;  ///< where the applications of R ran (device.hpp)
  std::string device_note;      ///< why the CPU when the GPU was allowed but not used
};

/// Bytes the shared subspace of k vectors needs on an m-dimensional family.
double family_bytes(Index m, Index k);

/// The smallest subspace family_subspace accepts: options.subspace_dimension
/// when set (capped at m), else min(m, 4).
Index family_min_subspace(Index m, const SolverOptions& options);

/// The subspace dimension options.subspace_dimension asks for (0: min(m, 16)
/// for one member, min(m, 64) for several),
/// reduced to what fits beside fixed_bytes, and at least min(m, 4).
/// \throws sgdstab::resource_error when even that does not fit.
Index family_subspace(Index m, const SolverOptions& options, double fixed_bytes, const std::string& what,
                      Index members);

/// lambda_max(M(s)) for each s (each in (0, 1]). Method::dense builds R
/// explicitly (m applications) and calls LAPACK per member; Lanczos uses the
/// shared subspace, falling back to the dense method for members it cannot
/// certify (when m <= options.dense_fallback_max_dimension and it fits). A
/// member is converged when error <= options.tolerance * value. With
/// low_precision set, every member (largest s first) starts with a
/// single-precision phase in one shared float subspace (float images) whose
/// top Ritz vectors seed the double solve (theory/region.md, section 7);
/// nothing is certified from single-precision images.
/// \throws sgdstab::resource_error before allocating what would not fit.
FamilyResult family_top(const Eigen::VectorXd& p, const ApplyFn& apply_r, const std::vector<double>& s,
                        const Eigen::VectorXd& start, const SolverOptions& options, double fixed_bytes,
                        const std::string& what, bool want_vectors = false,
                        const LowApplyFn& low_precision = LowApplyFn());

}  // namespace sgdstab::detail
