#pragma once
/// \file band.hpp
/// \brief A certified band eta_low <= eta*(B) <= eta_high from a few
/// applications of the second-moment map, without the eigenproblem of the
/// whole operator (theory/band.md).
///
/// With A(S) = H S + S H and Q(S) = E[H_xi S H_xi] (moment_operator.hpp),
/// eta* = 1 / lambda_max of the pencil (Q, A) on symmetric matrices on
/// range(H). Two sides, each certified (up to rounding; from a
/// LinearizedModel, and with momentum, the lower side may instead be
/// probabilistic, see below):
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
/// Two inputs: a Geometry (the reduced r x r coordinates, trial matrices as
/// above), and a LinearizedModel (linearized_model.hpp: Jacobian products
/// only, never an r x r matrix; theory/band.md, section 5):
///  - eta_high is the exact eta* of the model restricted to a parameter
///    subspace (the Krylov space of H from J^T u, u random, plus J^T of the
///    lower side's top noise directions at this B), which is the
///    Rayleigh-Ritz bound over every symmetric matrix on that subspace;
///  - eta_low is the Collatz-Wielandt bound at X = Pi (Wu, Ma & E), as
///    2 / lambda_max(M) with M = (alpha / n) K + beta blockdiag(J_i J_i^T)
///    on R^{n C}, and lambda_max(M) bounded from above by Lanczos either
///    with certainty (the residual and the trace of the rest, or Weyl's
///    alpha lambda_max(H) + beta max_i lambda_max(J_i J_i^T); theory/band.md
///    section 5.3) or with
///    probability at least 1 - delta over the random start (Kuczynski &
///    Wozniakowski 1992); eta_low_kind says which. With the default
///    delta = 1e-3 the probabilistic side is used wherever it is tighter;
///    delta = 0 keeps every lower side certified. Over K batch sizes the
///    probabilistic sides hold together with probability >= 1 - K delta
///    (each B has its own random start). Products in float32 (a float32
///    TorchModel) hold only up to their rounding (~1e-7 relative).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, 1);
/// sgdstab::BandResult b = sgdstab::stability_band(g, /*batch=*/4);
/// std::cout << b.eta_low << " <= eta* <= " << b.eta_high << " (" << b.trial_dimension << " trial matrices)\n";
/// \endcode
#include <cstdint>
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/linearized_model.hpp"
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
  /// LinearizedModel input: dimension m of the parameter subspace of the
  /// upper side (Lanczos vectors of H; min(m, p, n C) used).
  Index subspace = 64;
  /// LinearizedModel input: times the upper side's subspace may double
  /// (continuing the same Lanczos run, so the subspaces are nested and
  /// eta_high only falls) while the band is wider than the tolerance and the
  /// last doubling closed at least a tenth of the gap to eta_low
  /// (theory/band.md, section 5.1); 0 = a fixed subspace of dimension
  /// `subspace`. A doubling whose basis or restricted threshold would not
  /// fit in memory is not made or not used (the report's message says so).
  Index subspace_doublings = 2;
  /// LinearizedModel input: Lanczos vectors for lambda_max(M) of the lower
  /// side, per batch size (min(k, n C) used).
  Index lanczos_steps = 80;
  /// LinearizedModel input: M's top Ritz vectors u (the directions of the
  /// largest gradient noise at this B) whose J^T u join the subspace of the
  /// upper side, per batch size.
  Index noise_vectors = 8;
  /// LinearizedModel input: failure probability allowed for the
  /// probabilistic lower side; 0 = certified only.
  double delta = 1e-3;
  /// LinearizedModel input: seed of the random start vectors (the CLI's --seed).
  std::uint64_t seed = 1;
  /// SGD with momentum (PyTorch's SGD(momentum=momentum), nesterov as there;
  /// theory/momentum.md); 0 = plain SGD. With momentum the second-moment map
  /// is not self-adjoint and the band is (theory/band.md, section 6):
  /// eta_low a Collatz-Wielandt bound (certified or probabilistic, as for
  /// plain SGD), eta_high certified as the smaller of the full-batch limit
  /// 2(1 + beta) / lambda_max(H) (Nesterov: over 1 + 2 beta) and a bound
  /// from the gradient noise on the parameter subspace (a trial matrix there
  /// proves kappa(eta) >= 1). A Geometry input is then taken through its
  /// reduced factor (JacobianModel::from_geometry).
  double momentum = 0.0;
  bool nesterov = false;  ///< Nesterov's variant (at momentum 0 it is plain SGD, as in Momentum)
  /// \throws sgdstab::invalid_argument naming the field that is out of range.
  void validate() const;
};

/// BandOptions' table (options.hpp): tolerance (--band-tol), top_vectors
/// (--top-vectors), max_steps (--band-steps), subspace (--band-subspace),
/// lanczos_steps (--band-lanczos), noise_vectors (--band-noise-vectors),
/// delta (--band-delta), seed (no flag: the command line's --seed) and
/// momentum, nesterov (no flags of their own: `sgdstab band --momentum BETA
/// [--nesterov]`); the exponents are code only.
template <>
const std::vector<OptionField<BandOptions>>& option_table<BandOptions>();

/// The band and how it was reached. status() is converged when both sides
/// are computed (each certified, or the lower side probabilistic as
/// eta_low_kind says); the band may still be wider than the
/// tolerance: see relative_width and report.message.
struct BandResult : Result {
  double eta_low = 0.0;   ///< eta_low <= eta*(B): certified, or with probability >= 1 - delta (eta_low_kind)
  double eta_high = 0.0;  ///< certified: eta*(B) <= eta_high
  double relative_width = 0.0;  ///< (eta_high - eta_low) / eta_high
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  Index trial_dimension = 0;  ///< matrices in the final Rayleigh-Ritz space
  /// What proved eta_low: "H^a" with the exponent, or "ritz" (the best trial
  /// matrix); "Pi" for a LinearizedModel; "momentum-modes" with momentum
  /// (theory/band.md, section 6).
  std::string low_witness;
  /// "certified", or "probabilistic": eta_low <= eta* with probability at
  /// least 1 - delta over the random start (LinearizedModel input, or momentum).
  std::string eta_low_kind = "certified";
  double delta = 0.0;              ///< the failure probability of eta_low (0 when certified)
  double eta_low_certified = 0.0;  ///< the certified lower side (= eta_low when eta_low_kind is certified)
  /// LinearizedModel input: dimension m of the parameter subspace that gave
  /// eta_high (0 for a Geometry; with momentum the subspace of the trial
  /// matrices and of lambda_max(H) in the full-batch limit): its Krylov
  /// vectors of H plus the noise directions kept.
  Index subspace_dimension = 0;
  /// LinearizedModel input: doublings of the Krylov part tried for this band
  /// (BandOptions::subspace_doublings), including a last one that did not
  /// lower eta_high or was not used (the report's message says which).
  Index subspace_doublings = 0;
  /// LinearizedModel input: columns of J V and J^T U the band asked the model
  /// for (not those inside the model's own sample_grams()).
  Index products = 0;
};

/// eta_low <= eta*(B) <= eta_high for the scheme (theory/band.md).
/// \throws sgdstab::invalid_argument unless 1 <= batch <= n and the options are valid.
BandResult stability_band(const Geometry& geometry, Index batch, Sampling sampling = Sampling::without_replacement,
                          const BandOptions& options = {});

/// The same from Jacobian products only (theory/band.md, section 5).
/// report.matvecs = products; report.iterations = Lanczos vectors in all.
/// \throws sgdstab::invalid_argument unless 1 <= batch <= n, the options are
///   valid and the model's products have the right shapes and finite entries;
///   sgdstab::resource_error when the Lanczos vectors would not fit in memory.
BandResult stability_band(const LinearizedModel& model, Index batch,
                          Sampling sampling = Sampling::without_replacement, const BandOptions& options = {});

/// Bands for several batch sizes, sharing the products that do not depend
/// on B (the Krylov subspace of H and the per-sample Grams).
std::vector<BandResult> stability_bands(const LinearizedModel& model, const std::vector<Index>& batches,
                                        Sampling sampling = Sampling::without_replacement,
                                        const BandOptions& options = {});

/// Bands for several sampling schemes and batch sizes: result[k][j] is the
/// band of schemes[k] at batches[j]. The products that depend on neither
/// (the Krylov subspace of H and the per-sample Grams) are made once for all
/// schemes; each scheme's bands equal stability_bands(model, batches,
/// schemes[k], options) (the same random stream), and every result reports
/// the products of the whole call. Under a joint reading of the
/// probabilistic sides the failure probability is at most S K delta.
/// \throws as stability_bands; sgdstab::invalid_argument for no schemes.
std::vector<std::vector<BandResult>> stability_band_region(const LinearizedModel& model,
                                                           const std::vector<Sampling>& schemes,
                                                           const std::vector<Index>& batches,
                                                           const BandOptions& options = {});

}  // namespace sgdstab
