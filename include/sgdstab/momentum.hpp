#pragma once
/// \file momentum.hpp
/// \brief SGD with momentum (heavy-ball and Nesterov, PyTorch's convention):
/// the second-moment map of the linearized dynamics and its spectral radius
/// (theory/momentum.md): the radius, the threshold and curves (the region
/// is stability_region's momentum overload, region.hpp; the Monte Carlo is
/// MonteCarloRun::momentum, montecarlo.hpp).
///
/// Linearized at an interpolating minimum, with u = lr * v, the state
/// z = (delta, u) evolves by z <- M_xi z (theory/momentum.md, eq. 1), and
/// its second moment Z = E[z z^T] (2r x 2r, reduced coordinates) by
///   T(Z) = M0 Z M0^T + lr (C + C^T) + lr^2 (e e^T) (x) Q(X)     (eq. 3),
/// X the top-left r x r block, Q plain SGD's E[H_xi X H_xi]: one application
/// costs about one application of SecondMomentOperator::quadratic.
/// Mean-square stable on range(H) iff rho(T) < 1. T is not self-adjoint;
/// it preserves the PSD cone, so rho(T) is an eigenvalue with a PSD
/// eigenvector.
///
/// \code
/// sgdstab::Momentum m{0.9, /*nesterov=*/false};
/// auto r = sgdstab::momentum_spectral_radius(geometry, /*lr=*/0.05, /*batch=*/8,
///                                            sgdstab::Sampling::without_replacement, m);
/// bool stable = r.converged() && r.rho < 1.0;
/// \endcode
#include <Eigen/Core>
#include <utility>
#include <vector>

#include "sgdstab/moment_operator.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab {

/// The second-moment map T of momentum SGD at a learning rate.
class MomentumOperator {
 public:
  /// With weight_decay = lambda > 0 (L2, as torch.optim.SGD's weight_decay
  /// with momentum): H_xi -> H_xi + lambda I in eq. 1 (theory/momentum.md,
  /// section 8). With decoupled_weight_decay = mu > 0 (heavy-ball only; AdamW's
  /// decay in heavy-ball units, theory/adaptive.md section 5) the position
  /// step is delta <- (1 - lr mu) delta - u'.
  /// \throws sgdstab::invalid_argument unless lr > 0 is finite, lambda >= 0
  /// and mu >= 0 are finite, mu = 0 with Nesterov, and the momentum is valid
  /// (and, through `op`, 1 <= batch <= n).
  MomentumOperator(const SecondMomentOperator& op, double lr, Momentum momentum, double weight_decay = 0.0,
                   double decoupled_weight_decay = 0.0);
  Index dimension() const { return 2 * op_->dimension(); }  ///< 2r
  double lr() const { return lr_; }
  const Momentum& momentum() const { return momentum_; }
  double weight_decay() const { return weight_decay_; }
  double decoupled_weight_decay() const { return decoupled_; }
  /// T(Z) for a symmetric 2r x 2r Z (eq. 3).
  Eigen::MatrixXd apply(const Eigen::MatrixXd& z) const;
  /// Z_t = T^t(Z_0), t = 0..steps.
  std::vector<Eigen::MatrixXd> propagate(const Eigen::MatrixXd& z0, Index steps) const;

  // Spectra's operator concept on packed symmetric 2r x 2r matrices (pack()).
  using Scalar = double;
  Index rows() const { return packed_size(dimension()); }
  Index cols() const { return rows(); }
  void perform_op(const Scalar* x_in, Scalar* y_out) const;
  Index applications() const { return applications_; }

 private:
  const SecondMomentOperator* op_;
  double lr_;
  Momentum momentum_;
  double weight_decay_;
  double decoupled_;
  double m01_, e0_;  // M0 = [[a I, m01 I], [0, beta I]], a = 1 - lr mu, e = (e0, 1)
  mutable Index applications_ = 0;
};

/// rho(T) of momentum SGD on range(H). method dense builds the
/// r(2r+1)-square matrix and takes the largest eigenvalue modulus (LAPACK
/// via Eigen's real Schur form); lanczos (the matrix-free choice; automatic
/// above dense_max_dimension) runs Spectra's Arnoldi (GenEigsSolver,
/// largest real part: the Perron root rho is real and >= every modulus,
/// theory/momentum.md section 3) and falls back to dense when it does not converge
/// and the dense matrix fits. With beta = 0 this is spectral_radius.
/// Without sampling noise (B = n without replacement, Bernoulli at B = n)
/// and weight decay it is the closed form max_d rho(m(d))^2 of
/// theory/momentum.md section 4 (method dense, no application of T).
/// No eigen-direction is returned (want_direction is ignored here).
/// \throws sgdstab::invalid_argument on bad lr, batch or momentum;
/// sgdstab::resource_error when the chosen method would not fit in memory.
RadiusResult momentum_spectral_radius(const Geometry& geometry, double lr, Index batch, Sampling sampling,
                                      Momentum momentum, const SolverOptions& options = {});

/// The stable set of momentum SGD in the learning rate at one batch size.
struct MomentumThresholdResult : Result {
  /// First boundary of the stable set: mean-square stable for 0 < lr < eta_star.
  double eta_star = 0.0;
  /// The limit of the mean dynamics (full-batch momentum GD): 2(1 + beta) /
  /// lambda_max (heavy-ball), 2(1 + beta) / ((1 + 2 beta) lambda_max)
  /// (Nesterov), with lambda_max + weight_decay in place of lambda_max under
  /// L2 weight decay, and 2(1 + beta1) / ((1 - beta1) lambda_max + (1 +
  /// beta1) wd) (in AdamW's lr) under AdamW's decoupled decay
  /// (theory/adaptive.md eq. 9); eta_star <= eta_mean always.
  double eta_mean = 0.0;
  /// Weight decay (0: none): L2 lambda (weight_decay_momentum_threshold), or,
  /// when decoupled_weight_decay is true, AdamW's decoupled decay in its own
  /// units (adamw_threshold, adaptive.hpp).
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  /// Certified bracket of eta_star when converged: kappa(eta_low) < 1 <
  /// kappa(eta_high) (theory/momentum.md, eq. 9), eta_low <= eta_star <= eta_high.
  double eta_low = 0.0, eta_high = 0.0;
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  Momentum momentum;
  /// Learning rates at which kappa was evaluated, ascending, with kappa at
  /// this batch size there (in a curve or region also the evaluations made
  /// for the other batch sizes of the same noise class, eq. 10): the search
  /// is reproducible and auditable. Values far from 1 may be loose (1e-4).
  std::vector<std::pair<double, double>> evaluations;
  /// The stable set on the scanned grid as intervals (lo, hi): (0, eta_star)
  /// first; more only when the scan (scan_points > 0) found kappa falling
  /// below 1 again above eta_star.
  std::vector<std::pair<double, double>> stable_intervals;
  // report: matvecs all applications of C; iterations the kappa evaluations.
};

/// eta* of momentum SGD (theory/momentum.md, section 5): stable iff
/// lr < eta_mean and kappa(lr) = lambda_max(W o C o W) < 1, with C(X) =
/// E[(H_xi - H) X (H_xi - H)] and W the entrywise square root of the
/// kernel G_lr of the mean dynamics (eq. 8-9). kappa is a symmetric top
/// eigenvalue (Lanczos with an error bound, warm-started from one lr to the
/// next; dense for small r), found by a safeguarded Newton iteration on
/// log kappa against log lr (the slope is free: Hellmann-Feynman), at 1e-4
/// accuracy far from the root and the options' tolerance near it, until
/// the bracket [eta_low, eta_high] is tolerance-narrow. scan_points > 0
/// also evaluates kappa on that many points of (0, eta_mean) to report
/// further stable intervals if any (none has been seen).
/// With beta = 0 this is stability_threshold's eta*.
MomentumThresholdResult momentum_threshold(const Geometry& geometry, Index batch, Sampling sampling, Momentum momentum,
                                           const SolverOptions& options = {}, Index scan_points = 0);

/// momentum_threshold at each batch size (1, 2, 4, ..., n by default_batches),
/// solved on one function kappa_0 (kappa = b(B) kappa_0, theory/momentum.md
/// eq. 10), each point starting from the evaluations of the ones before.
std::vector<MomentumThresholdResult> momentum_threshold_curve(const Geometry& geometry, const std::vector<Index>& batches,
                                                              Sampling sampling, Momentum momentum,
                                                              const SolverOptions& options = {});

}  // namespace sgdstab
