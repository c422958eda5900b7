#pragma once
/// \file covariance.hpp
/// \brief The stationary second moment of linearized SGD at a minimum that
/// does not interpolate (theory/covariance.md; Mulayoff & Michaeli, COLT
/// 2024, Thm 4-5).
///
/// At a minimum of L = (1/n) sum_i 1/2 |f(x_i) - y_i|^2 whose residuals
/// r_i = f(x_i) - y_i do not vanish, the per-sample gradients
/// g_i = J_i^T r_i sum to zero but are not zero. Linearized (Gauss-Newton
/// Hessian), SGD moves the deviation by delta <- (I - lr H_B) delta - lr g_B,
/// and when rho(T) < 1 its second moment converges to the solution of
///   (I - T) Sigma = lr^2 E[g_B g_B^T] = lr^2 beta(B) Sigma_g,
///   Sigma_g = (1/n) sum_i g_i g_i^T
/// (beta the scheme's factor, sampling.hpp; eq. 3 of the note). The library
/// solves the equivalent SPD system (A - lr Q) Sigma = lr beta Sigma_g by
/// conjugate gradients preconditioned with A^{-1}, on range(H) (where the
/// g_i live), and reports Sigma's trace, top eigenvalues and the expected
/// excess loss 1/2 tr(H Sigma).
///
/// \code
/// auto g = sgdstab::Geometry::from_jacobian(J, C);
/// Eigen::VectorXd r = f - y;                            // n C residuals, sample-major
/// auto cov = sgdstab::stationary_covariance(g, r, /*lr=*/0.01, /*batch=*/8,
///                                           sgdstab::Sampling::with_replacement);
/// if (cov.converged()) std::cout << cov.excess_loss << "\n";
/// \endcode
#include <Eigen/Core>

#include "sgdstab/geometry.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/solver.hpp"

namespace sgdstab {

/// Options of stationary_covariance. validate() throws sgdstab::invalid_argument.
struct CovarianceOptions {
  /// Relative residual |b - M x| / |b| at which conjugate gradients stop.
  double tolerance = 1e-10;
  /// Conjugate-gradient iterations at most (each one application of Q).
  Index max_iterations = 5000;
  /// The point is a minimum when |(1/n) sum g_i| <= gradient_tolerance *
  /// (1/n) sum |g_i| (else invalid_argument).
  double gradient_tolerance = 1e-6;
  /// Top eigenvalues of Sigma reported.
  Index top = 5;
  /// SGD with momentum (heavy-ball or Nesterov, momentum.hpp; beta = 0:
  /// plain SGD). The state is z = (delta, u); Sigma is the delta block of the
  /// stationary E[z z^T], solved on the symmetric form of theory/covariance.md
  /// section 7 ((I - b W o C_0 o W) Y = beta W o Sigma_g by CG, X = W o Y).
  Momentum momentum;
  /// L2 weight decay lambda >= 0 (theory/covariance.md, section 8): SGD steps
  /// theta <- theta - lr (g_B + lambda theta), as torch.optim.SGD(weight_decay=)
  /// does (with momentum the buffer takes g_B + lambda theta), and the point
  /// must be a minimum of the regularized loss L + lambda/2 |theta|^2:
  /// (1/n) sum g_i + lambda theta* = 0.
  double weight_decay = 0.0;
  /// Decoupled decay mu >= 0 (heavy-ball momentum or plain SGD, not Nesterov;
  /// not with weight_decay): the position step shrinks, theta <- (1 - lr mu)
  /// theta - u' with u' = beta u + lr g_B, and the point must satisfy
  /// (1/n) sum g_i + mu (1 - beta) theta* = 0. AdamW in phi = P^{1/2} theta is
  /// this at lr (1 - beta1) with mu = wd / (1 - beta1) (theory/adaptive.md,
  /// section 5; theory/covariance.md, section 8). Plain SGD: the same as L2.
  double decoupled_weight_decay = 0.0;
  /// With weight_decay or decoupled_weight_decay > 0: theta* in reduced
  /// coordinates, V^T theta* (r entries; reduced_parameters()), to check that
  /// the point is that minimum.
  Eigen::VectorXd parameters;
  void validate() const;
};

struct CovarianceResult : Result {
  double lr = 0.0;
  Index batch = 0;
  Sampling sampling = Sampling::without_replacement;
  Momentum momentum;               ///< the options' (beta = 0: plain SGD)
  double weight_decay = 0.0;       ///< the options' lambda
  double decoupled_weight_decay = 0.0;  ///< the options' mu
  double rho = 0.0;                ///< rho(T) at lr (< 1, else no stationary state)
  Eigen::MatrixXd covariance;      ///< Sigma in reduced coordinates (r x r; H = diag(d) there)
  double trace = 0.0;              ///< tr Sigma = E|delta|^2 in the stationary state
  Eigen::VectorXd top_eigenvalues; ///< of Sigma, descending
  double excess_loss = 0.0;        ///< 1/2 tr(H Sigma): E[L] - L(theta*) to second order (the loss
                                   ///< without the penalty; the regularized one adds lambda/2 tr Sigma)
  double gradient_noise_trace = 0.0;  ///< tr Sigma_g = (1/n) sum |g_i|^2
  double mean_gradient_norm = 0.0;    ///< |(1/n) sum g_i| (0 at an exact minimum); with weight
                                      ///< decay |(1/n) sum g_i + lambda theta*|, the penalized loss's
  // report: iterations = CG iterations, matvecs = applications of Q (with
  // momentum: of C_0; the radius's are not counted), residual = the final
  // relative residual; status not_converged when max_iterations ran out
  // (the covariance is then the last iterate), numerical_failure when the
  // momentum solve returned a Sigma that is not PSD.
};

/// The stationary second moment of SGD (with options.momentum: momentum SGD,
/// rho(T) that of momentum_spectral_radius) at lr with batch size B.
/// residuals: the n C values f(x_i) - y_i (sample-major, as the Jacobian's rows).
/// \throws sgdstab::invalid_argument on a residual vector of the wrong
///   length or with NaN/Inf, a point that is not a minimum (the gradients
///   do not sum to zero), lr <= 0, B outside 1..n, or rho(T) >= 1 at lr
///   (naming rho: there is no stationary state); with momentum also when rho
///   did not converge or the mean-dynamics kernel has an entry <= 0; with
///   weight decay when options.parameters is missing or has the wrong length,
///   or the point is not a minimum of the regularized loss.
CovarianceResult stationary_covariance(const Geometry& geometry, const Eigen::Ref<const Eigen::VectorXd>& residuals,
                                       double lr, Index batch, Sampling sampling = Sampling::without_replacement,
                                       const CovarianceOptions& options = {});

/// The same from per-sample gradients already in reduced coordinates (r x n,
/// column i = V^T g_i; reduced_gradients). Any loss: cross-entropy's
/// g_i = J_i^T (p_i - t_i) with the geometry of S^{1/2} J (loss_curvature.hpp).
CovarianceResult stationary_covariance_from_gradients(const Geometry& geometry,
                                                      const Eigen::Ref<const Eigen::MatrixXd>& reduced,
                                                      double lr, Index batch,
                                                      Sampling sampling = Sampling::without_replacement,
                                                      const CovarianceOptions& options = {});

/// Per-sample gradients g_i (rows of an n x p matrix, parameter space) in the
/// reduced coordinates of `geometry`, which must have been built from
/// `jacobian` ((n C) x p, the same matrix, transforms included):
/// V^T g_i = (n diag(d))^{-1} Z^T J g_i (theory/covariance.md, eq. 5).
/// \throws sgdstab::invalid_argument on shapes that disagree, NaN/Inf, a
///   Jacobian other than the geometry's (V = J^T Z (n diag d)^{-1} not
///   orthonormal to 1e-6), or a g_i with more than 1e-6 of its norm outside
///   range(H) (naming the sample: a gradient of this model lies in range(J^T)).
Eigen::MatrixXd reduced_gradients(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                  const Eigen::Ref<const Eigen::MatrixXd>& gradients);

/// The orthonormal basis V (p x r) of range(H) that the reduced coordinates of
/// `geometry` use, from the Jacobian it was built from: V = J^T Z (n diag d)^{-1}
/// (theory/covariance.md, eq. 5); a parameter-space covariance is V X V^T.
/// \throws sgdstab::invalid_argument on a Jacobian of the wrong shape, with
///   NaN/Inf, or other than the geometry's (V^T V not I to 1e-6).
Eigen::MatrixXd reduction_basis(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian);

/// The parameters theta (p entries) in the reduced coordinates of `geometry`,
/// built from `jacobian`: V^T theta (CovarianceOptions::parameters). At a
/// minimum of the regularized loss lambda theta = -(1/n) sum g_i lies in
/// range(H), so theta must too.
/// \throws sgdstab::invalid_argument on shapes that disagree, NaN/Inf, a
///   Jacobian other than the geometry's, or a theta with more than `tolerance`
///   of its norm outside range(H) (not a minimum of the regularized loss; the
///   program and Python pass the minimum test's gradient tolerance).
Eigen::VectorXd reduced_parameters(const Geometry& geometry, const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                   const Eigen::Ref<const Eigen::VectorXd>& theta, double tolerance = 1e-6);

}  // namespace sgdstab
