#pragma once
/// \file bounds.hpp
/// \brief The seed paper's alignment of SGD noise and every known bound on
/// the threshold, beside the exact eta*(B) (theory/bounds.md).
///
/// Alignment (Wu, Wang & Su, NeurIPS 2022). At parameters theta with
/// residuals r_i = f(x_i) - y_i, per-sample gradients g_i = J_i^T r_i,
///   Sigma_1 = (1/n) sum_i g_i g_i^T - gbar gbar^T,   G = J^T J / n,
///   mu = Tr(Sigma_1 G) / (2 L |G|_F^2),               (theory/bounds.md, eq. 1)
/// computed from the Gram K = J J^T in sample space (eq. 2). At theta* + eps delta
/// the residual is J delta to first order, so the linearized alignment is
/// mu_lin(delta) = mu(residuals = J delta), and its worst case over delta in
/// range(G) is mu_* = n lambda_min(B_r) / |G|_F^2 (eq. 4).
///
/// Bounds (gamma below is the factor beta of sampling.hpp, the coefficient of
/// the single-sample noise in the batch noise):
///   eta_gd               = 2 / lambda_max(H)                       necessary
///   eta_sufficient       = 2 / lambda_max(H^-1/2 E[H_xi^2] H^-1/2) sufficient (Wu, Ma & E 2018)
///   eta_necessary_rank1  = 2 lambda / E[(v^T H_xi v)^2]            necessary (Mulayoff & Michaeli)
///   eta_necessary_trace  = 2 Tr H / E[|H_xi|_F^2]                  necessary (Mulayoff & Michaeli)
///   eta_alignment        = 1 / (|H|_F sqrt(gamma mu_*))            necessary (seed paper)
///   eta_trace_b1         = 2 / Tr H  (B = 1, scalar output)        necessary
/// so eta_sufficient <= eta* <= min(all necessary ones) (tested on random instances).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, 1);
/// auto b = sgdstab::stability_bounds(g, /*batch=*/4);
/// std::cout << b.eta_sufficient << " <= " << b.eta_star << " <= " << b.eta_gd << "\n";
/// \endcode
#include <Eigen/Core>
#include <optional>

#include "sgdstab/geometry.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab {

/// mu from the Gram K ((n c) x (n c)) and residuals r (n c, sample-major).
/// \throws sgdstab::invalid_argument on shape mismatch, non-finite input or r = 0.
double alignment(const Eigen::Ref<const Eigen::MatrixXd>& gram, Index outputs,
                 const Eigen::Ref<const Eigen::VectorXd>& residuals);
/// The same computed in parameter space from the Jacobian ((n c) x p):
/// Sigma_1 and G formed explicitly (for small p; the two must agree).
double alignment_from_jacobian(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                               const Eigen::Ref<const Eigen::VectorXd>& residuals);

/// mu, L and |G|_F of a model at its current parameters (alignment_at in
/// minimize.hpp and cnn.hpp); mu is NaN at an exactly interpolating point (0/0).
struct AlignmentSample {
  Index step = 0;
  double loss = 0.0;
  double mu = 0.0;
  double g_frobenius = 0.0;
};

/// Worst-case linearized alignment on range(H) and its minimizing direction.
struct WorstAlignment : Result {
  double mu_star = 0.0;
  /// The minimizing residual direction u = J delta (n c, unit norm): any
  /// delta with J delta = u attains mu_star.
  Eigen::VectorXd residual_direction;
  // report: status numerical_failure when LAPACK failed, with the message.
};
WorstAlignment worst_case_alignment(const Geometry& g);

/// The bounds table for one batch size and scheme.
struct StabilityBounds : Result {
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  double gamma = 0.0;                 ///< beta of sampling_factors
  double eta_star = 0.0;              ///< exact threshold
  // report: converged when the exact threshold and every eigensolve of the
  // table converged; otherwise the first failure's status, named in the
  // message; matvecs and seconds of the whole table.
  double eta_gd = 0.0;
  double eta_sufficient = 0.0;
  double eta_necessary_rank1 = 0.0;
  double eta_necessary_trace = 0.0;
  std::optional<double> eta_alignment;  ///< empty when gamma mu_* = 0 (no constraint)
  std::optional<double> eta_trace_b1;   ///< B = 1 and c = 1 only
  double mu_star = 0.0;
  double sharpness = 0.0;             ///< lambda_max(H)
  double non_uniformity = 0.0;        ///< s = sqrt(lambda_max((1/n) sum h_i^2 - H^2))
  double hessian_frobenius = 0.0;
  double hessian_trace = 0.0;
  /// Lower bound on the per-step growth factor of E L at lr (escape when > 1):
  /// lr^2 gamma mu_* |H|_F^2 (as (lr |H|_F)^2: lr^2 alone underflows for J ~ 1e150).
  double escape_factor(double lr) const {
    const double x = lr * hessian_frobenius;
    return x * x * gamma * mu_star;
  }
};
/// \param threshold  an already computed eta*(B) for this batch and scheme (skips the solve)
/// \param mu_star    an already computed worst_case_alignment(g).mu_star (it does not depend on B)
StabilityBounds stability_bounds(const Geometry& g, Index batch, Sampling sampling = Sampling::without_replacement,
                                 const SolverOptions& options = {}, const ThresholdResult* threshold = nullptr,
                                 std::optional<double> mu_star = std::nullopt);

/// The size and spread of the Hessian H = (1/n) J^T J (Wu, Ma & E's
/// sharpness and non-uniformity, the seed paper's |H|_F) from the Gram
/// K = J J^T alone, without its eigendecomposition (theory/bounds.md,
/// section 7): tens of products with K where Geometry::from_gram costs a
/// dense eigensolve (3.0 s, 71 products, against 108 s for the reduction at
/// n C = 10 000, the Wu-Ma-E network at initialization, AMD EPYC 2 cores).
struct HessianMeasures : Result {
  Index samples = 0;
  Index outputs = 0;
  double sharpness = 0.0;          ///< lambda_max(H) = lambda_max(K) / n
  double non_uniformity = 0.0;     ///< s = sqrt(lambda_max((1/n) sum_i h_i^2 - H^2)), h_i = J_i^T J_i
  double hessian_frobenius = 0.0;  ///< |H|_F = |K|_F / n
  double hessian_trace = 0.0;      ///< Tr H = Tr K / n
  // report: converged when both eigenvalues converged (iterations = Lanczos
  // steps of s, matvecs = products with K, method dense or lanczos as the
  // non-uniformity was computed; residual and error_bound are s^2's).
};

/// HessianMeasures of the Gram K ((n c) x (n c), sample-major, symmetric
/// positive semidefinite) in the library's loss convention (h_i is the
/// Hessian of 1/2 |f(x_i) - y_i|^2). options: tolerance (relative residual
/// of both eigenvalues), method (dense: everything from one LAPACK
/// eigendecomposition of K; automatic: dense up to dense_max_dimension
/// rows), subspace_dimension (Lanczos steps of the non-uniformity, 0 =
/// min(n c, 300); also the subspace of lambda_max(K)'s Lanczos),
/// dense_fallback_max_dimension (a Lanczos that did not converge, or whose
/// vectors drifted into the null space of a singular or ill-conditioned K,
/// is redone densely up to this size) and memory_limit_bytes. A result that
/// did not converge says so in report: its numbers are not to be trusted.
/// Symmetry and positive semidefiniteness are checked to 1e-6 of max |K|
/// and of lambda_max(K) (Geometry::from_gram's default gram_tolerance) on
/// the dense path (K's spectrum);
/// the matrix-free path sees it only through x^T K x of its Lanczos vectors
/// (an indefinite K those vectors never meet gives numbers for a matrix
/// that is no Gram: Geometry::from_gram checks the whole spectrum).
/// \throws sgdstab::invalid_argument on a non-square, non-symmetric or
///   non-finite Gram, outputs that do not divide its size, or a Gram seen
///   to be indefinite; sgdstab::resource_error before allocating what would
///   not fit.
HessianMeasures hessian_measures(const Eigen::Ref<const Eigen::MatrixXd>& gram, Index outputs,
                                 const SolverOptions& options = {});

}  // namespace sgdstab
