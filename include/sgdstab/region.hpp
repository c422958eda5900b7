#pragma once
/// \file region.hpp
/// \brief The stability region: eta*(B) for many batch sizes and every
/// sampling scheme at once, each with a certified interval, and a
/// guaranteed band for every real B in [1, n] (theory/region.md).
///
/// In reduced coordinates the pencil of stability.hpp is
///   A^{-1/2} Q A^{-1/2} = alpha P + beta R,
/// P diagonal (P_kl = d_k d_l / (d_k + d_l)), R = A^{-1/2} D A^{-1/2} with
/// D(S) = (1/n) sum_i h_i S h_i, and (alpha, beta) the factors of the
/// scheme (sampling.hpp). So with s = beta / (alpha + beta),
///   1 / eta*(B) = (alpha + beta) g(s),   g(s) = lambda_max((1 - s) P + s R),
/// one convex function of s in [0, 1] for all batch sizes and schemes.
/// stability_region computes g at every requested s from one shared
/// subspace that keeps R's images (theory/region.md, section 5), so the
/// cost of a region is close to the cost of its hardest point.
///
/// Each point carries [eta_low, eta_high] with eta_low <= eta* <= eta_high:
/// eta_high from a Rayleigh quotient (a rigorous lower bound on g), eta_low
/// from an a posteriori error bound (section 4). Between points the band
/// uses convexity: tangents below, chords above (section 6).
///
/// \code
/// auto g = sgdstab::Geometry::from_gram(K, /*outputs=*/4);
/// auto region = sgdstab::stability_region(g, {sgdstab::Sampling::without_replacement},
///                                         sgdstab::default_batches(g.samples()));
/// if (!region.converged()) std::cerr << region.message << "\n";
/// for (const auto& p : region.curves[0].points)
///   std::cout << p.batch << " " << p.eta_star << "\n";
/// auto band = region.band(sgdstab::Sampling::without_replacement, 3.5);  // between grid points
/// \endcode
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {

/// An interval that contains eta*.
struct EtaInterval {
  double low = 0.0;
  double high = 0.0;
};

/// eta*(B) for one scheme and batch size.
struct RegionPoint : Result {
  Index batch = 0;
  double eta_star = 0.0;   ///< 1 / ((alpha + beta) g(s)) at the Ritz value
  double eta_low = 0.0;    ///< certified: eta_low <= eta*
  double eta_high = 0.0;   ///< certified: eta* <= eta_high
  double s = 0.0;          ///< beta / (alpha + beta), the point's place on g
  // report: residual |M v - theta v| / theta of the Ritz pair behind the
  // point; matvecs the applications of R spent while this point's s was the
  // solver's target (0 when the subspace of earlier points already
  // certified it); method; status and message.
};

struct RegionCurve {
  Sampling sampling = Sampling::without_replacement;
  std::vector<RegionPoint> points;  ///< in the order of the requested batches
};

/// A line (1 - s) p + s r below g (a Rayleigh quotient of a computed vector).
struct RegionTangent {
  double p = 0.0, r = 0.0;
};
/// A point (s, upper) with g(s) <= upper.
struct RegionKnot {
  double s = 0.0, upper = 0.0;
};

struct StabilityRegion : Result {
  Index samples = 0, outputs = 0, rank = 0;
  double lambda_max = 0.0;  ///< lambda_max(H)
  double eta_gd = 0.0;      ///< 2 / lambda_max(H)
  std::vector<RegionCurve> curves;  ///< one per requested scheme, in order
  // report: matvecs the applications of R (each one Q-application's
  // cost), single_precision_matvecs (theory/region.md, section 7),
  // iterations the restarts, method, device (where the applications ran),
  // seconds (the solve) and apply_seconds (the part spent applying R; the
  // rest is the subspace's own work); status converged when every point is,
  // else the first failure's status, named in the message.
  Index subspace_dimension = 0;
  /// SGD with momentum (beta = 0: plain SGD). With beta > 0 (and for every
  /// `adam` region) the points come from momentum_threshold's search
  /// (theory/momentum.md, section 7), `s` of a point is its noise level b(B),
  /// tangents and knots are empty, band() uses the monotonicity of eta*(B) in
  /// B instead of the convexity of g, and g_bounds() is refused.
  Momentum momentum;
  /// L2 weight decay (weight_decay_region, weight_decay.hpp; 0: none). With
  /// it eta_gd = eta_mean = 2 / (lambda_max + weight_decay), and band() and
  /// g_bounds() are those of the shifted family (c = 1): band() refuses
  /// Bernoulli sampling. With momentum too (weight_decay_momentum_region):
  /// eta_gd = 2 / (lambda_max + weight_decay), eta_mean momentum_threshold's
  /// with lambda_max + weight_decay, band() that of momentum (any scheme).
  double weight_decay = 0.0;
  /// The full-batch limit: 2 / lambda_max (plain SGD), else
  /// momentum_threshold's eta_mean.
  double eta_mean = 0.0;
  /// adam_region and adam_l2_region (adaptive.hpp): every learning rate
  /// (points, eta_mean, eta_gd = eta_mean, band()) is Adam's, momentum.beta is
  /// beta1 (0: RMSProp, from adam_l2_region only), and weight_decay is AdamW's
  /// decoupled decay when decoupled_weight_decay, else Adam's or RMSProp's own
  /// L2 decay (adam_l2_region). band() is momentum's (monotone in B) for all.
  bool adam = false;
  bool decoupled_weight_decay = false;

  /// A guaranteed interval for eta*(B) at any real B in [1, n] from the
  /// tangents and chords of g (theory/region.md, section 6); low = 0 where
  /// no chord covers s(B). With momentum: [eta_low of the nearest converged
  /// point at or below B, eta_high of the nearest at or above B] (eta_mean
  /// above the last). \throws sgdstab::invalid_argument unless 1 <= B <= n.
  EtaInterval band(Sampling sampling, double batch) const;
  /// The same bounds on g itself at s in [0, 1] (plain SGD only).
  EtaInterval g_bounds(double s) const;

  std::vector<RegionTangent> tangents;
  std::vector<RegionKnot> knots;  ///< ascending in s; s = 0 always present
};

/// (alpha + beta, s) of a scheme at a real batch size B in [1, n]: the
/// formulas of sampling.hpp evaluated at non-integer B.
/// \throws sgdstab::invalid_argument unless 1 <= B <= n.
std::pair<double, double> region_coordinates(Sampling sampling, Index samples, double batch);

/// eta*(B) for every scheme in `schemes` and every B in `batches`.
/// SolverOptions: tolerance is the relative width of each certified
/// interval; method dense builds R (m = r(r+1)/2 applications) and is exact;
/// lanczos (automatic above dense_max_dimension) shares one subspace of
/// subspace_dimension vectors (0: up to 64, as memory allows).
/// \throws sgdstab::invalid_argument on an empty or repeated scheme or batch
/// list, or a batch outside 1..n; sgdstab::resource_error when it would not fit.
StabilityRegion stability_region(const Geometry& geometry, const std::vector<Sampling>& schemes,
                                 const std::vector<Index>& batches, const SolverOptions& options = {});

/// The least memory (bytes) stability_region needs for this geometry in
/// host memory, plain SGD without weight decay, beside the geometry itself
/// (options.device resolved as the solver resolves it): the
/// operator's scratch, the single-precision copy of the factor when the
/// mixed start runs (options.mixed_precision and rank >= mixed_precision_min_rank),
/// and the smallest shared subspace (4 vectors of length r(r+1)/2, or
/// options.subspace_dimension when set), or the dense r(r+1)/2 matrix when
/// the method resolves to dense. With options.memory_limit_bytes at or above
/// it the region runs (with a larger subspace, up to 64 vectors, when the
/// memory allows: theory/region.md section 5); below it, stability_region
/// throws resource_error before it computes anything. The command line's
/// `region --engine auto` compares it with the memory available.
double exact_region_min_bytes(const Geometry& geometry, const SolverOptions& options = {});
/// The same before any geometry exists, from its sizes: rows = n C (the
/// factor's rows) and rank = r; device automatic counts as the CPU. Not
/// monotone in r: at r(r+1)/2 <= dense_max_dimension the dense path's
/// matrix (at most 8 dense_max_dimension^2 bytes) is counted instead of the
/// subspace, so a rank bound gives the footprint at that rank, not a bound
/// for every smaller one. \throws sgdstab::invalid_argument unless 0 <= rank <= rows.
double exact_region_min_bytes(Index rows, Index rank, const SolverOptions& options = {});

/// The region of SGD with momentum (theory/momentum.md, section 7): every
/// point is momentum_threshold's eta* with its certified bracket. Per noise
/// class (without and with replacement share one; Bernoulli has its own)
/// one function kappa_0(eta) serves every batch size, kappa = b(B) kappa_0,
/// so the points reuse each other's evaluations. beta = 0 is the plain
/// region above. Same errors as above, plus an invalid momentum.
StabilityRegion stability_region(const Geometry& geometry, const std::vector<Sampling>& schemes,
                                 const std::vector<Index>& batches, Momentum momentum,
                                 const SolverOptions& options = {});

}  // namespace sgdstab
