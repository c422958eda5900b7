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
#include "sgdstab/solver.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {

// Method (automatic | dense | lanczos) and Status are in types.hpp,
// SolverOptions and SolveReport in solver.hpp.

/// eta*(B) and its provenance.
struct ThresholdResult : Result {
  double eta_star = 0.0;      ///< stable iff lr <= eta_star (loss convention 1/2, mean)
  double pencil_max = 0.0;    ///< lambda_max(A^{-1/2} Q A^{-1/2}) = 1 / eta_star
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  /// Top generalized eigen-direction S* (r x r, PSD, unit Frobenius norm,
  /// reduced coordinates) when SolverOptions::want_direction; else empty.
  Eigen::MatrixXd direction;
};

/// rho(T) on range(H) and its provenance.
struct RadiusResult : Result {
  double rho = 0.0;  ///< spectral radius of T = largest eigenvalue (T is positive, self-adjoint)
  double lr = 0.0;
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  Eigen::MatrixXd direction;  ///< top eigenvector of T (PSD) on request
};

/// The exact threshold eta*(B). \throws sgdstab::invalid_argument unless
/// 1 <= batch <= n; sgdstab::resource_error when it would not fit in memory.
ThresholdResult stability_threshold(const Geometry& geometry, Index batch,
                                    Sampling sampling = Sampling::without_replacement,
                                    const SolverOptions& options = {});

/// rho(T) at learning rate lr. Without sampling noise (B = n without
/// replacement, Bernoulli at B = n) it is the closed form max_k (1 - lr d_k)^2
/// over H's eigenvalues d_k (method dense, no application of T;
/// theory/spectral_radius.md section 1). \throws sgdstab::invalid_argument unless
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
