// Adam and RMSProp with a frozen preconditioner as heavy-ball momentum SGD
// in preconditioned coordinates (theory/adaptive.md).
#include "sgdstab/adaptive.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "foundations/stopwatch.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/loss_curvature.hpp"
#include "sgdstab/memory.hpp"
#include "solvers/momentum_levels.hpp"
#include "solvers/region_family.hpp"

namespace sgdstab {

namespace {

Momentum adam_momentum(double beta1) {
  detail::require(std::isfinite(beta1) && beta1 >= 0.0 && beta1 < 1.0, "adam",
                  "beta1 must be in [0, 1), got " + detail::fmt(beta1));
  return Momentum{beta1, false};
}

// The decoupled decay in heavy-ball units: lr wd = eta mu with eta = lr (1 - beta1).
double decoupled_of(double weight_decay, double beta1, const char* where) {
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, where,
                  "AdamW's weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  return weight_decay / (1.0 - beta1);
}

// Heavy-ball learning rates -> Adam's (theory/adaptive.md, eq. 3).
MomentumThresholdResult to_adam_units(MomentumThresholdResult r, double beta1) {
  const double f = 1.0 / (1.0 - beta1);
  r.eta_star *= f;
  r.eta_mean *= f;
  r.eta_low *= f;
  r.eta_high *= f;
  for (auto& e : r.evaluations) e.first *= f;
  for (auto& iv : r.stable_intervals) {
    iv.first *= f;
    iv.second *= f;
  }
  return r;
}

}  // namespace

double adam_heavy_ball_lr(double lr, double beta1) { return lr * (1.0 - adam_momentum(beta1).beta); }

MomentumThresholdResult adam_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                       const SolverOptions& options, Index scan_points) {
  const Momentum m = adam_momentum(beta1);
  return to_adam_units(momentum_threshold(preconditioned, batch, sampling, m, options, scan_points), beta1);
}

std::vector<MomentumThresholdResult> adam_threshold_curve(const Geometry& preconditioned,
                                                          const std::vector<Index>& batches, Sampling sampling,
                                                          double beta1, const SolverOptions& options) {
  const Momentum m = adam_momentum(beta1);
  std::vector<MomentumThresholdResult> out = momentum_threshold_curve(preconditioned, batches, sampling, m, options);
  for (auto& r : out) r = to_adam_units(std::move(r), beta1);
  return out;
}

RadiusResult adam_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                  double beta1, const SolverOptions& options) {
  detail::require(std::isfinite(lr) && lr > 0.0, "adam_spectral_radius",
                  "the learning rate must be finite and > 0, got " + detail::fmt(lr));
  RadiusResult r = momentum_spectral_radius(preconditioned, adam_heavy_ball_lr(lr, beta1), batch, sampling,
                                            adam_momentum(beta1), options);
  r.lr = lr;
  return r;
}

namespace {

// Adam's units with the decay echoed: AdamW's decoupled one, or Adam's own L2 (section 6).
MomentumThresholdResult decayed_units(MomentumThresholdResult r, double beta1, double weight_decay, bool decoupled) {
  r = to_adam_units(std::move(r), beta1);
  r.weight_decay = weight_decay;
  r.decoupled_weight_decay = decoupled;
  return r;
}

MomentumThresholdResult adamw_units(MomentumThresholdResult r, double beta1, double weight_decay) {
  return decayed_units(std::move(r), beta1, weight_decay, true);
}

// A momentum region in heavy-ball lr -> Adam's (theory/adaptive.md, eq. 4),
// eta_gd the full-batch limit, the decay echoed.
StabilityRegion adam_region_units(StabilityRegion out, double beta1, double weight_decay, bool decoupled) {
  const double f = 1.0 / (1.0 - beta1);
  out.eta_mean *= f;
  out.eta_gd = out.eta_mean;
  for (RegionCurve& c : out.curves)
    for (RegionPoint& p : c.points) {
      p.eta_star *= f;
      p.eta_low *= f;
      p.eta_high *= f;
    }
  out.adam = true;
  out.weight_decay = weight_decay;
  out.decoupled_weight_decay = decoupled;
  return out;
}

}  // namespace

MomentumThresholdResult adamw_threshold(const Geometry& preconditioned, Index batch, Sampling sampling, double beta1,
                                        double weight_decay, const SolverOptions& options, Index scan_points) {
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_threshold");
  return adamw_units(detail::timed([&] {
                       return detail::decayed_momentum_threshold(preconditioned, batch, sampling, m, 0.0, mu, options,
                                                                 scan_points, "adamw_threshold");
                     }),
                     beta1, weight_decay);
}

std::vector<MomentumThresholdResult> adamw_threshold_curve(const Geometry& preconditioned,
                                                           const std::vector<Index>& batches, Sampling sampling,
                                                           double beta1, double weight_decay,
                                                           const SolverOptions& options) {
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_threshold_curve");
  std::vector<MomentumThresholdResult> out = detail::decayed_momentum_curve(
      preconditioned, batches, sampling, m, 0.0, mu, options, "adamw_threshold_curve");
  for (auto& r : out) r = adamw_units(std::move(r), beta1, weight_decay);
  return out;
}

RadiusResult adamw_spectral_radius(const Geometry& preconditioned, double lr, Index batch, Sampling sampling,
                                   double beta1, double weight_decay, const SolverOptions& options) {
  detail::require(std::isfinite(lr) && lr > 0.0, "adamw_spectral_radius",
                  "the learning rate must be finite and > 0, got " + detail::fmt(lr));
  const Momentum m = adam_momentum(beta1);
  const double mu = decoupled_of(weight_decay, beta1, "adamw_spectral_radius");
  RadiusResult r = detail::timed([&] {
    return detail::decayed_momentum_radius(preconditioned, adam_heavy_ball_lr(lr, beta1), batch, sampling, m, 0.0, mu,
                                           options, "adamw_spectral_radius");
  });
  r.lr = lr;
  return r;
}

namespace {

// Adam's or RMSProp's L2 decay in phi = P^{1/2} theta (theory/adaptive.md,
// section 6): the geometry of J P^{-1/2} and the mean dynamics' basis, U^T V
// with A = H~ + wd P^{-1} = U diag(a) U^T.
struct L2Problem {
  Geometry geometry;
  detail::MeanBasis mean;
};

L2Problem l2_problem(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                     const Eigen::Ref<const Eigen::VectorXd>& preconditioner, double weight_decay,
                     const ReductionOptions& reduction, const char* where) {
  using Eigen::MatrixXd;
  using Eigen::VectorXd;
  detail::require(std::isfinite(weight_decay) && weight_decay >= 0.0, where,
                  "the weight decay must be finite and >= 0, got " + detail::fmt(weight_decay));
  const Index p = jacobian.cols();
  // p x p: A, U, the kernel G and its square root, and the iterates' workspace
  // (about 8 matrices), before anything is allocated.
  check_memory(8.0 * 8.0 * static_cast<double>(p) * static_cast<double>(p),
               std::string(where) + ": the mean dynamics on the whole parameter space (p = " + std::to_string(p) +
                   ")");
  const MatrixXd jt = precondition_jacobian(jacobian, preconditioner);  // checks P's size and entries
  L2Problem out{Geometry::from_jacobian(jt, outputs, reduction), {}};
  const Geometry& g = out.geometry;
  const double n = static_cast<double>(g.samples());
  // V = J~^T Z diag(1 / (n d)): the orthonormal eigenvectors of H~ in the
  // geometry's own reduced coordinates (Z = J~ V, Z^T Z = n diag(d)), made
  // orthonormal by V (V^T V)^{-1/2} (Loewdin: V^T V = I + O(eps) before, so
  // V moves by rounding only).
  MatrixXd v = jt.transpose() * g.factor();
  v *= (n * g.hessian_eigenvalues()).cwiseInverse().asDiagonal();
  MatrixXd vv = v.transpose() * v;
  VectorXd s;
  detail::symmetric_eigen_or_throw(vv, s, std::string(where) + ": the Gram matrix of H~'s eigenvectors");
  v = v * (vv * s.cwiseSqrt().cwiseInverse().asDiagonal() * vv.transpose());
  MatrixXd a = jt.transpose() * jt / n;
  a.diagonal() += weight_decay * preconditioner.cwiseInverse();
  detail::symmetric_eigen_or_throw(a, out.mean.eigenvalues,
                                   std::string(where) + ": the eigendecomposition of H~ + wd P^{-1}");
  if (!(out.mean.eigenvalues.minCoeff() > 0.0))
    throw numerical_error(std::string(where) + ": the weight decay " + detail::fmt(weight_decay) +
                          " is below the rounding of H~ + wd P^{-1} (its smallest eigenvalue came out " +
                          detail::fmt(out.mean.eigenvalues.minCoeff()) + " <= 0); use weight decay 0 for it");
  out.mean.basis = a.transpose() * v;  // a now holds U
  return out;
}

// The geometry of J P^{-1/2}: without decay, everything holds in its r x r coordinates.
Geometry preconditioned_geometry(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                 const Eigen::Ref<const Eigen::VectorXd>& preconditioner,
                                 const ReductionOptions& reduction) {
  return Geometry::from_jacobian(precondition_jacobian(jacobian, preconditioner), outputs, reduction);
}

// The batch sizes against n before any O(p^3) work (the Geometry checks the
// Jacobian itself).
void check_samples(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs, const std::vector<Index>& batches,
                   const char* where) {
  if (outputs <= 0 || jacobian.rows() % outputs != 0) return;
  for (const Index b : batches) check_batch(b, jacobian.rows() / outputs, where);
}

MomentumThresholdResult adam_l2_units(MomentumThresholdResult r, double beta1, double weight_decay) {
  return decayed_units(std::move(r), beta1, weight_decay, false);
}

}  // namespace

MomentumThresholdResult adam_l2_threshold(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                          const Eigen::Ref<const Eigen::VectorXd>& preconditioner, Index batch,
                                          Sampling sampling, double beta1, double weight_decay,
                                          const SolverOptions& options, Index scan_points,
                                          const ReductionOptions& reduction) {
  const Momentum m = adam_momentum(beta1);
  const char* where = "adam_l2_threshold";
  options.validate();
  detail::require(scan_points >= 0, where, "scan_points must be >= 0, got " + std::to_string(scan_points));
  check_samples(jacobian, outputs, {batch}, where);
  return adam_l2_units(detail::timed([&] {
                         if (weight_decay == 0.0)  // H~ alone: the reduced coordinates hold it
                           return momentum_threshold(preconditioned_geometry(jacobian, outputs, preconditioner,
                                                                             reduction),
                                                     batch, sampling, m, options, scan_points);
                         const L2Problem l2 =
                             l2_problem(jacobian, outputs, preconditioner, weight_decay, reduction, where);
                         return detail::mean_basis_momentum_threshold(l2.geometry, l2.mean, batch, sampling, m,
                                                                      weight_decay, options, scan_points, where);
                       }),
                       beta1, weight_decay);
}

std::vector<MomentumThresholdResult> adam_l2_threshold_curve(const Eigen::Ref<const Eigen::MatrixXd>& jacobian,
                                                             Index outputs,
                                                             const Eigen::Ref<const Eigen::VectorXd>& preconditioner,
                                                             const std::vector<Index>& batches, Sampling sampling,
                                                             double beta1, double weight_decay,
                                                             const SolverOptions& options,
                                                             const ReductionOptions& reduction) {
  const Momentum m = adam_momentum(beta1);
  const char* where = "adam_l2_threshold_curve";
  options.validate();
  detail::require(!batches.empty(), where, "the list of batch sizes is empty");
  check_samples(jacobian, outputs, batches, where);
  const detail::Stopwatch watch;
  std::vector<MomentumThresholdResult> out;
  if (weight_decay == 0.0) {
    out = momentum_threshold_curve(preconditioned_geometry(jacobian, outputs, preconditioner, reduction), batches,
                                   sampling, m, options);
  } else {
    const L2Problem l2 = l2_problem(jacobian, outputs, preconditioner, weight_decay, reduction, where);
    out = detail::momentum_levels(l2.geometry, {sampling}, batches, m, options, weight_decay, 0.0, &l2.mean).front();
  }
  for (MomentumThresholdResult& r : out) {
    r = adam_l2_units(std::move(r), beta1, weight_decay);
    r.report.seconds = watch.seconds();
  }
  return out;
}

RadiusResult adam_l2_spectral_radius(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                                     const Eigen::Ref<const Eigen::VectorXd>& preconditioner, double lr, Index batch,
                                     Sampling sampling, double beta1, double weight_decay,
                                     const SolverOptions& options, const ReductionOptions& reduction) {
  const char* where = "adam_l2_spectral_radius";
  const Momentum m = adam_momentum(beta1);
  detail::require(std::isfinite(lr) && lr > 0.0, where,
                  "the learning rate must be finite and > 0, got " + detail::fmt(lr));
  options.validate();
  check_samples(jacobian, outputs, {batch}, where);
  RadiusResult r = detail::timed([&] {
    if (weight_decay == 0.0)
      return momentum_spectral_radius(preconditioned_geometry(jacobian, outputs, preconditioner, reduction),
                                      adam_heavy_ball_lr(lr, beta1), batch, sampling, m, options);
    const L2Problem l2 = l2_problem(jacobian, outputs, preconditioner, weight_decay, reduction, where);
    return detail::mean_basis_momentum_radius(l2.geometry, l2.mean, adam_heavy_ball_lr(lr, beta1), batch, sampling,
                                              m, options, where);
  });
  r.lr = lr;
  return r;
}

StabilityRegion adam_region(const Geometry& preconditioned, const std::vector<Sampling>& schemes,
                            const std::vector<Index>& batches, double beta1, double weight_decay,
                            const SolverOptions& options) {
  detail::require(std::isfinite(beta1) && beta1 < 1.0, "adam_region",
                  "beta1 must be in (0, 1), got " + detail::fmt(beta1));
  const Momentum m = adam_momentum(beta1);
  detail::require(beta1 > 0.0, "adam_region",
                  "beta1 must be > 0 (beta1 = 0 is RMSProp: stability_region, or weight_decay_region with "
                  "weight_decay, on the preconditioned geometry)");
  const double mu = decoupled_of(weight_decay, beta1, "adam_region");
  return adam_region_units(detail::decayed_momentum_region(preconditioned, schemes, batches, m, 0.0, mu, options),
                           beta1, weight_decay, weight_decay > 0.0);
}

StabilityRegion adam_l2_region(const Eigen::Ref<const Eigen::MatrixXd>& jacobian, Index outputs,
                               const Eigen::Ref<const Eigen::VectorXd>& preconditioner,
                               const std::vector<Sampling>& schemes, const std::vector<Index>& batches, double beta1,
                               double weight_decay, const SolverOptions& options, const ReductionOptions& reduction) {
  const Momentum m = adam_momentum(beta1);
  const char* where = "adam_l2_region";
  options.validate();
  if (outputs > 0 && jacobian.rows() % outputs == 0)  // the lists before any O(p^3) work
    detail::check_region_lists(schemes, batches, jacobian.rows() / outputs);
  const detail::Stopwatch watch;
  StabilityRegion out;
  if (weight_decay == 0.0) {  // H~ alone: the reduced coordinates hold it
    const Geometry g = preconditioned_geometry(jacobian, outputs, preconditioner, reduction);
    if (beta1 > 0.0) return adam_region(g, schemes, batches, beta1, 0.0, options);
    out = stability_region(g, schemes, batches, m, options);  // RMSProp: plain SGD on J P^{-1/2}
  } else {
    const L2Problem l2 = l2_problem(jacobian, outputs, preconditioner, weight_decay, reduction, where);
    out = adam_region_units(
        detail::decayed_momentum_region(l2.geometry, schemes, batches, m, weight_decay, 0.0, options, &l2.mean), beta1,
        weight_decay, false);
  }
  detail::set_region_seconds(out, watch.seconds());
  return out;
}

}  // namespace sgdstab

