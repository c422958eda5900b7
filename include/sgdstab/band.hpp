#pragma once
/// \file band.hpp
/// \brief A certified band eta_low <= eta*(B) <= eta_high from a few
/// applications of the second-moment map, without the eigenproblem of the
/// whole operator (theory/band.md).
///
/// With A(S) = H S + S H and Q(S) = E[H_xi S H_xi] (moment_operator.hpp),
/// eta* = 1 / lambda_max of the pencil (Q, A) on symmetric matrices on
/// range(H). Two sides, each certified (up to rounding):
///  - eta_high (Rayleigh-Ritz, theory/band.md, eq. 2): for any subspace V of
///    symmetric matrices, max_{X in V} <X, Q X> / <X, A X> <= lambda_max, so
///    1 / that maximum >= eta*. V starts from polynomials of H (Pi, H, H^2,
///    H^3) and the pairs of H's top eigenvectors, and grows by A^{-1} Q of
///    its best matrix.
///  - eta_low (Collatz-Wielandt, eq. 4): T is a positive map, so any X > 0
///    with T(X) <= X proves rho(T) <= 1; when A(X) > 0 that holds for every
///    eta <= 1 / lambda_max(A(X)^{-1/2} Q(X) A(X)^{-1/2}). Tried: X = H^a for
///    a in a grid (a = 0 is Wu, Ma & E's sufficient bound) and the best
///    matrix of V, shifted to be positive definite.
/// At B = n without replacement (GD) both sides equal 2 / lambda_max(H).
///
/// This first version works on a Geometry (the reduced r x r coordinates);
/// the matrix-free operator the scale issue asks for is next.
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, 1);
/// sgdstab::BandResult b = sgdstab::stability_band(g, /*batch=*/4);
/// std::cout << b.eta_low << " <= eta* <= " << b.eta_high << " (" << b.trial_dimension << " trial matrices)\n";
/// \endcode
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// Controls of stability_band.
struct BandOptions {
  /// Stop once (eta_high - eta_low) <= tolerance * eta_high.
  double tolerance = 1e-3;
  /// H's top eigenvectors whose symmetric pairs start the trial space:
  /// k (k + 1) / 2 matrices (min(k, r) used).
  Index top_vectors = 6;
  /// Growth steps of the trial space (one application of Q each, plus one
  /// for the Collatz-Wielandt side).
  Index max_steps = 40;
  /// Exponents a of the Collatz-Wielandt trials X = H^a.
  std::vector<double> exponents = {-1.0, -0.5, 0.0, 0.5, 1.0};
  /// \throws sgdstab::invalid_argument naming the field that is out of range.
  void validate() const;
};

/// BandOptions' table (options.hpp): tolerance (--band-tol), top_vectors
/// (--top-vectors) and max_steps (--band-steps); the exponents are code only.
template <>
const std::vector<OptionField<BandOptions>>& option_table<BandOptions>();

/// The band and how it was reached. status() is converged when both sides
/// are computed (each certified); the band may still be wider than the
/// tolerance: see relative_width and report.message.
struct BandResult : Result {
  double eta_low = 0.0;   ///< certified: eta_low <= eta*(B)
  double eta_high = 0.0;  ///< certified: eta*(B) <= eta_high
  double relative_width = 0.0;  ///< (eta_high - eta_low) / eta_high
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  Index trial_dimension = 0;  ///< matrices in the final Rayleigh-Ritz space
  /// What proved eta_low: "H^a" with the exponent, or "ritz" (the best trial matrix).
  std::string low_witness;
};

/// eta_low <= eta*(B) <= eta_high for the scheme (theory/band.md).
/// \throws sgdstab::invalid_argument unless 1 <= batch <= n and the options are valid.
BandResult stability_band(const Geometry& geometry, Index batch, Sampling sampling = Sampling::without_replacement,
                          const BandOptions& options = {});

}  // namespace sgdstab
