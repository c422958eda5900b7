#pragma once
/// \file minimize.hpp
/// \brief Interpolating global minima of the square loss, and the check that
/// the stability analysis is applied at one (theory/minimize.md).
///
/// Three ways to reach a minimum of L(theta) = (1/n) sum_i 1/2 |f(x_i) - y_i|^2:
///  - minimum_norm_solution: for models linear in theta (linear model, random
///    feature model) the interpolating theta of least Euclidean norm, by a
///    complete orthogonal decomposition (numerically stable least squares);
///  - gauss_newton: damped Gauss-Newton (Levenberg-Marquardt) on the
///    residual, in sample space (the n c x n c Gram) when p >= n c and in
///    parameter space otherwise;
///  - train_sgd: plain GD / mini-batch SGD at a given lr and batch size with
///    a given sampling scheme, for minima *selected by SGD*.
/// Each stops when max_{i,k} |f_k(x_i) - y_ik| <= residual_tolerance * (label
/// scale), the label scale being max |y_ik| (1 when all labels are 0), and
/// reports what happened in a MinimizeResult; none throws on non-convergence.
///
/// geometry_at_minimum() is the bridge to the stability routines: it refuses
/// (sgdstab::invalid_argument, with the residual in the message) a theta whose
/// residual exceeds the tolerance, unless the caller overrides the check.
///
/// \code
/// sgdstab::Mlp net(spec, 1);
/// auto res = sgdstab::gauss_newton(net, X, Y);
/// if (!res.converged()) std::cerr << res.message << "\n";
/// auto g = sgdstab::geometry_at_minimum(net, X, Y);   // throws if not interpolating
/// auto eta = sgdstab::stability_threshold(g, 8);
/// \endcode
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sgdstab/bounds.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/mlp.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/random.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/schedule.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// What a minimizer did. `model` (passed by reference) holds the final theta.
struct MinimizeResult : Result {
  // report: status converged iff max_residual <= tolerance; diverged
  // (GD/SGD blew up), numerical_failure (NaN/Inf in the Jacobian) or
  // not_converged otherwise; message why it stopped; iterations the
  // Gauss-Newton iterations or GD/SGD steps; seconds.
  double loss = 0.0;           ///< final L (1/2, mean over samples)
  double max_residual = 0.0;   ///< final max |f_k(x_i) - y_ik|
  double tolerance = 0.0;      ///< the absolute residual tolerance used
  double gradient_norm = 0.0;  ///< final |grad L|
  std::string method;          ///< "minimum-norm", "gauss-newton", "gd", "sgd"
  std::vector<double> loss_history;  ///< L after each iteration (or each check for SGD)
};

/// Options shared by the minimizers. validate() throws sgdstab::invalid_argument.
struct MinimizeOptions {
  /// Relative residual tolerance (see file comment).
  double residual_tolerance = 1e-10;
  /// Gauss-Newton iterations.
  Index max_iterations = 100;
  /// Memory the minimizer may use, in bytes; 0 = what is available.
  double memory_limit_bytes = 0.0;
  void validate() const;
};

/// MinimizeOptions' table (options.hpp): residual_tolerance, max_iterations
/// and memory_limit_bytes with their defaults, help and rules.
template <>
const std::vector<OptionField<MinimizeOptions>>& option_table<MinimizeOptions>();

/// The absolute tolerance residual_tolerance * max(max|Y|, or 1 if Y = 0).
double residual_tolerance_for(const Eigen::Ref<const Eigen::MatrixXd>& y, double relative);

/// Minimum-norm interpolating theta of a model linear in theta
/// (MlpSpec::linear_in_parameters()). When the features cannot interpolate
/// (too few parameters) this is the least-squares solution and converged = false.
/// \throws sgdstab::invalid_argument when the model is not linear in theta.
MinimizeResult minimum_norm_solution(Mlp& model, const Eigen::Ref<const Eigen::MatrixXd>& x,
                                     const Eigen::Ref<const Eigen::MatrixXd>& y,
                                     const MinimizeOptions& options = {});

/// Levenberg-Marquardt from the model's current theta (theory/minimize.md, eq. 3).
MinimizeResult gauss_newton(Mlp& model, const Eigen::Ref<const Eigen::MatrixXd>& x,
                            const Eigen::Ref<const Eigen::MatrixXd>& y, const MinimizeOptions& options = {});

/// mu, L and |G|_F of a model at its current parameters (one Gram of the
/// data, theory/bounds.md): for logging the alignment along a training run
/// (TrainOptions::observer).
AlignmentSample alignment_at(const Mlp& model, const Eigen::Ref<const Eigen::MatrixXd>& x,
                             const Eigen::Ref<const Eigen::MatrixXd>& y, Index step = 0);

/// Options of train_sgd. validate() throws sgdstab::invalid_argument.
struct TrainOptions {
  double lr = 0.0;       ///< eta > 0
  Index batch = 0;       ///< B, 1 <= B <= n; B = n without replacement is full-batch GD
  Sampling sampling = Sampling::without_replacement;
  Index max_steps = 100000;
  double residual_tolerance = 1e-10;  ///< relative, as above
  Index check_every = 0;              ///< full-loss check period in steps; 0 = max(1, floor(n / B))
  std::uint64_t seed = 0;             ///< batch selection
  /// Stop (diverged) when L exceeds this multiple of its initial value.
  double divergence_factor = 1e8;
  /// Called with (step, model) at step 0 and at every loss check; may be empty.
  std::function<void(Index, const Mlp&)> observer;
  /// PyTorch's SGD(momentum=beta, nesterov=...), dampening 0: v <- beta v + g,
  /// theta <- theta - lr v (or - lr (g + beta v), Nesterov); v_0 = 0.
  Momentum momentum;
  void validate(Index samples) const;
};

/// TrainOptions' table (options.hpp): lr, batch, sampling, max_steps,
/// residual_tolerance, check_every, seed and divergence_factor; momentum is
/// Momentum's table, the observer is code.
template <>
const std::vector<OptionField<TrainOptions>>& option_table<TrainOptions>();

/// theta <- theta - (lr / B) sum_{i in batch} grad l_i, batches drawn by the
/// sampling scheme (bernoulli: each i kept w.p. B/n, still divided by B).
/// Stops at the residual tolerance, at max_steps, or on divergence.
MinimizeResult train_sgd(Mlp& model, const Eigen::Ref<const Eigen::MatrixXd>& x,
                         const Eigen::Ref<const Eigen::MatrixXd>& y, const TrainOptions& options);

/// Controls of geometry_at_minimum.
struct MinimumCheck {
  double residual_tolerance = 1e-10;  ///< relative, as above
  /// Analyze anyway when the residual is above tolerance (then H differs from
  /// the Gauss-Newton matrix the stability theory uses: the caller's risk).
  bool allow_nonzero_residual = false;
};

/// The reduced geometry at the model's theta: from the Gram (sample space)
/// when p >= n c, else from the Jacobian.
/// \throws sgdstab::invalid_argument when theta is not an interpolating minimum
///   within tolerance (unless overridden), naming the residual and the tolerance.
Geometry geometry_at_minimum(const Mlp& model, const Eigen::Ref<const Eigen::MatrixXd>& x,
                             const Eigen::Ref<const Eigen::MatrixXd>& y, const MinimumCheck& check = {},
                             const ReductionOptions& reduction = {});

}  // namespace sgdstab
