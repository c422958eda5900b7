#pragma once
/// \file montecarlo.hpp
/// \brief Monte Carlo cross-checks of the exact stability answers: batched
/// simulation of linearized SGD, the exact second moments beside it, and an
/// unbiased estimate of the transition operator T from sampled batches
/// (theory/montecarlo.md).
///
/// Everything but adam_l2_cross_check (the whole parameter space, see there)
/// runs in the reduced coordinates of a Geometry (range(H),
/// dimension r): delta in R^r, H = diag(d), h_i = Z_i^T Z_i. Linearized SGD is
///   delta_{t+1} = (I - lr H_xi) delta_t,   H_xi = (1/B) sum_{i in batch} h_i
/// (theory/montecarlo.md, eq. 1). Four batch schedules: the three of the
/// closed-form operator (Sampling) and `reshuffle` - epochs of a random
/// permutation cut into consecutive batches of B, the last one smaller when B
/// does not divide n (PyTorch's DataLoader with shuffle=True, drop_last=False;
/// that batch's gradient is divided by its own size). Reshuffling has no
/// closed-form operator: only simulation and the sampled-operator estimate
/// apply to it.
///
/// Heavy tails: above the threshold |delta_t|^2 is carried by rare
/// trajectories, so its sample mean *underestimates* E|delta_t|^2 at long
/// horizons (and its confidence interval is then too optimistic). Results
/// therefore also give the median and the mean of log |delta_t|^2, and the
/// sharp check of rho is the sampled-operator estimate, which does not
/// compound over time.
///
/// Reproducibility: trajectory m draws its start and its batches from its own
/// generator (seeded by a hash of (seed, m)), so the random numbers do not
/// depend on how the work is split; the arithmetic is one BLAS GEMM per
/// half-step, bitwise reproducible for a given BLAS build (OpenBLAS splits
/// dgemm over rows and columns, not over the summation).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, 1);
/// sgdstab::CrossCheckOptions o;
/// o.lr = 0.9 * sgdstab::stability_threshold(g, 4).eta_star;
/// o.batch = 4;
/// auto report = sgdstab::cross_check(g, o);
/// std::cout << sgdstab::to_string(report.verdict) << ": " << report.reason << "\n";
/// \endcode
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sgdstab/geometry.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/schedule.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// One summary per recorded step t.
struct MomentEstimate {
  Index step = 0;
  double mean = 0.0;        ///< sample mean over trajectories
  double ci_low = 0.0;      ///< confidence interval of the mean (Student t)
  double ci_high = 0.0;
  double median = 0.0;
  double mean_log = 0.0;    ///< mean of log(value); -inf if a value is 0
  /// Largest single value / sum of values: near 1/M for light tails; a large
  /// share means the mean is carried by few trajectories (heavy tail).
  double max_share = 0.0;
  /// Trajectories whose value overflowed (Inf/NaN); then mean and interval are +Inf.
  Index nonfinite = 0;
};

/// What every Monte Carlo routine simulates: SGD at (lr, B) under a schedule,
/// its random numbers and the level of its intervals.
struct MonteCarloRun {
  double lr = 0.0;                 ///< eta > 0
  Index batch = 0;                 ///< 1 <= B <= n
  Schedule schedule = Schedule::without_replacement;
  std::uint64_t seed = 0;
  double confidence = 0.95;        ///< of the intervals, in (0, 1)
  /// SGD with momentum (theory/momentum.md, eq. 1; PyTorch's convention):
  /// each trajectory carries u = lr v, starting at 0, and the operators act
  /// on the 2r x 2r second moment of z = (delta, u). beta = 0: plain SGD.
  Momentum momentum;
  /// L2 weight decay lambda >= 0 (theory/weight_decay.md, eq. 2): each step
  /// delta <- (1 - lr lambda) delta - lr H_xi delta (the drift -lr lambda
  /// theta* is left out: the simulation is of the homogeneous map);
  /// estimate_radius samples A_B = (1 - lr lambda) I - lr H_B, cross_check
  /// compares with the exact answers of weight_decay.hpp. With momentum the
  /// buffer takes (H_xi + lambda I) delta (torch.optim.SGD's weight_decay;
  /// theory/momentum.md, section 8), in all three.
  double weight_decay = 0.0;
  /// Decoupled weight decay mu >= 0 (AdamW's, in this lr's units:
  /// adamw's wd / (1 - beta1) at the heavy-ball lr; theory/adaptive.md
  /// section 5): with momentum the position step is delta <- (1 - lr mu)
  /// delta - u' (heavy-ball only; Nesterov is refused); without momentum it
  /// is L2 decay mu. In all three, cross_check against the adamw answers.
  double decoupled_weight_decay = 0.0;
};

/// Options of simulate_linearized. validate() throws sgdstab::invalid_argument.
struct SimulationOptions : MonteCarloRun {
  Index steps = 0;                 ///< T >= 0
  Index trajectories = 1000;       ///< M >= 2
  /// Start delta_0 (length r, reduced coordinates), the same for every
  /// trajectory; empty = delta_0 ~ N(0, I/r) independently per trajectory.
  Eigen::VectorXd start;
  /// Called after each step with (steps done, steps total); may be empty.
  std::function<void(Index, Index)> progress;
  void validate(const Geometry& g) const;
};

/// Monte Carlo of linearized SGD: |delta_t|^2 and the linearized loss
/// 1/2 delta^T H delta for t = 0..steps.
struct SimulationResult : Result {
  std::vector<MomentEstimate> squared_norm;  ///< |delta_t|^2
  std::vector<MomentEstimate> loss;          ///< 1/2 delta_t^T H delta_t
  Index trajectories = 0;
  double flops = 0.0;                        ///< floating-point operations spent in the steps
  // report: converged once every step ran; seconds.
};
SimulationResult simulate_linearized(const Geometry& g, const SimulationOptions& options);

/// Exact E|delta_t|^2 and E[1/2 delta_t^T H delta_t], t = 0..steps, from
/// S_t = T^t(S_0) with S_0 = I/r (the default start) or delta_0 delta_0^T.
struct ExactMoments {
  std::vector<double> squared_norm;
  std::vector<double> loss;
};
/// With momentum (beta > 0): Z_t = T^t(Z_0) of momentum SGD (momentum.hpp),
/// Z_0 = [[S_0, 0], [0, 0]] (u_0 = 0), and the moments of its delta block.
/// With weight_decay = lambda > 0 (plain SGD): S_t = T^t(S_0) with
/// T(S) = E[A_B S A_B], A_B = (1 - lr lambda) I - lr H_B (theory/weight_decay.md);
/// with momentum and lambda: MomentumOperator(..., lambda); decoupled mu:
/// MomentumOperator(..., lambda, mu) (without momentum: lambda + mu).
ExactMoments exact_moments(const Geometry& g, double lr, Index batch, Sampling sampling, Index steps,
                           const Eigen::VectorXd& start = Eigen::VectorXd(), const Momentum& momentum = {},
                           double weight_decay = 0.0, double decoupled_weight_decay = 0.0);

/// Options of estimate_radius. validate() throws sgdstab::invalid_argument.
struct RadiusEstimateOptions : MonteCarloRun {
  Index blocks = 2000;       ///< sampled batches (i.i.d. schemes) or epochs (reshuffle), >= 2
  double tolerance = 1e-10;  ///< eigensolver accuracy on the sampled operator
  void validate(const Geometry& g) const;
};

/// rho of the sampled operator T_hat(S) = (1/K) sum_k P_k S P_k^T, P_k = I - lr H_{b_k}
/// (an epoch's product for reshuffle, rho then taken per step: rho_epoch^{1/steps}).
/// The interval is the delta-method interval of the top eigenvalue
/// (theory/montecarlo.md, eq. 5). With momentum, P_k = M_{b_k} of
/// theory/momentum.md (eq. 1) on 2r x 2r second moments; that operator is
/// not self-adjoint, so its right and left Perron vectors come from Arnoldi
/// (theory/momentum.md, section 6).
struct RadiusEstimate : Result {
  double rho_hat = 0.0;
  double ci_low = 0.0;
  double ci_high = 0.0;
  Index blocks = 0;
  Index steps_per_block = 1;
  // report: status, matvecs and message of the eigensolver on the sampled
  // operator; seconds of the whole estimate.
};
RadiusEstimate estimate_radius(const Geometry& g, const RadiusEstimateOptions& options);

/// Options of cross_check. With momentum, every part (exact rho and eta*,
/// exact moments, simulation, sampled operator) is momentum SGD's.
struct CrossCheckOptions : MonteCarloRun {
  Index steps = 50;
  Index trajectories = 2000;
  Index blocks = 2000;
  /// Total probability of a false "disagree" when the exact answer is right,
  /// split (Bonferroni) between the rho test and the per-step moment tests.
  double significance = 0.01;
  std::function<void(Index, Index)> progress;  ///< simulation steps (done, total); may be empty
};

/// CrossCheckOptions' table (options.hpp): steps, trajectories, blocks,
/// seed, confidence and significance with their defaults, help and rules
/// (cross_check checks them); lr, batch, schedule and momentum are the run's.
template <>
const std::vector<OptionField<CrossCheckOptions>>& option_table<CrossCheckOptions>();

/// The analytic answer, the Monte Carlo estimates and a verdict.
struct CrossCheckReport : Result {
  std::optional<double> rho;          ///< exact rho(T) (empty for reshuffle)
  std::optional<double> eta_star;     ///< exact threshold (empty for reshuffle)
  ExactMoments exact;                 ///< empty for reshuffle
  SimulationResult simulation;
  RadiusEstimate radius;
  // report: converged when the exact solves and the sampled-operator
  // estimate all converged; otherwise the first failure (the verdict is then
  // inconclusive), named in the message; seconds.
  Verdict verdict = Verdict::inconclusive;
  std::string reason;
};
CrossCheckReport cross_check(const Geometry& g, const CrossCheckOptions& options);

/// cross_check for Adam's (beta1 > 0) or RMSProp's (beta1 = 0) own L2 decay
/// (torch.optim.Adam/RMSprop's weight_decay, g + wd theta before P^{-1};
/// theory/adaptive.md section 6), P frozen: the simulation, the exact moments
/// and the sampled operator run on the whole 2p state of phi = P^{1/2} theta
/// (heavy-ball at lr (1 - beta1) with mean H~ + wd P^{-1}; squared_norm is
/// |phi_t|^2 from phi_0 ~ N(0, I/p), loss 1/2 phi^T H~ phi), against
/// adam_l2_spectral_radius and adam_l2_threshold (eta_star in the
/// optimizer's lr). jacobian: (n C) x p, not preconditioned; preconditioner:
/// P's p entries. options.lr is the optimizer's lr, options.weight_decay the
/// L2 decay wd > 0 (library convention); options.momentum and
/// decoupled_weight_decay must be 0. Dense in p: p up to a few hundred.
/// \throws sgdstab::invalid_argument naming the bad option or input.
CrossCheckReport adam_l2_cross_check(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                     const Eigen::Ref<const Eigen::VectorXd>& preconditioner, double beta1,
                                     const CrossCheckOptions& options);

}  // namespace sgdstab
