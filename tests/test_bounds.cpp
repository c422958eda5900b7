// Alignment and bounds against independent references: the 1-D closed forms,
// parameter-space Sigma_1 and G, exhaustive batch enumeration (E[H_xi (x) H_xi])
// for every bound, the population Gaussian oracle, and the one-step identity.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <string>
#include <tuple>

#include "reference.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/montecarlo.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;

double gamma_of(Sampling s, double n, double b) {
  switch (s) {
    case Sampling::without_replacement: return (n - b) / (b * (n - 1));
    case Sampling::with_replacement: return 1.0 / b;
    case Sampling::bernoulli: return (n - b) / (n * b);
  }
  return 0.0;
}

// vec(E[H_xi S H_xi]) = kron2 vec(S) (column-major vec).
MatrixXd second_moment(const MatrixXd& kron2, const MatrixXd& s) {
  const Eigen::Index p = s.rows();
  const VectorXd v = kron2 * Eigen::Map<const VectorXd>(s.data(), p * p);
  return Eigen::Map<const MatrixXd>(v.data(), p, p);
}

struct ReferenceBounds {
  double eta_sufficient, eta_rank1, eta_trace;
};

// Every bound from enumerated moments in parameter space, restricted to range(H).
ReferenceBounds reference_bounds(const MatrixXd& j, Eigen::Index c, Eigen::Index b, Sampling s) {
  const auto h = ref::per_sample(j, c);
  const ref::Moments m = ref::enumerate(h, b, s);
  const MatrixXd& hm = m.mean;
  ref::SymEigenSolver es(hm);
  const double top = es.eigenvalues().maxCoeff();
  std::vector<Eigen::Index> keep;
  for (Eigen::Index k = 0; k < hm.rows(); ++k)
    if (es.eigenvalues()(k) > 1e-10 * top) keep.push_back(k);
  MatrixXd v(hm.rows(), static_cast<Eigen::Index>(keep.size()));
  VectorXd lam(v.cols());
  for (std::size_t q = 0; q < keep.size(); ++q) {
    v.col(static_cast<Eigen::Index>(q)) = es.eigenvectors().col(keep[q]);
    lam(static_cast<Eigen::Index>(q)) = es.eigenvalues()(keep[q]);
  }
  const MatrixXd eh2 = second_moment(m.kron2, MatrixXd::Identity(hm.rows(), hm.rows()));  // E[H_xi^2]
  const VectorXd is = lam.cwiseSqrt().cwiseInverse();
  const MatrixXd pencil = is.asDiagonal() * (v.transpose() * eh2 * v) * is.asDiagonal();
  ReferenceBounds r;
  r.eta_sufficient = 2.0 / ref::SymEigenSolver(pencil).eigenvalues().maxCoeff();
  const VectorXd top_vec = es.eigenvectors().col(hm.rows() - 1);
  const MatrixXd vv = top_vec * top_vec.transpose();
  r.eta_rank1 = 2.0 * top / (vv.cwiseProduct(second_moment(m.kron2, vv))).sum();
  r.eta_trace = 2.0 * hm.trace() / eh2.trace();
  return r;
}

}  // namespace

TEST(Bounds, OneDimensionCollapsesToTheClosedForm) {
  // Per-sample curvatures (1, 4, 9): a = 14/3, s^2 = 98/9, mu = s^2 / a^2 = 1/2.
  MatrixXd j(3, 1);
  j << 1.0, 2.0, 3.0;
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  EXPECT_REL_NEAR(sgdstab::worst_case_alignment(g).mu_star, 0.5, 1e-12);
  EXPECT_REL_NEAR(sgdstab::alignment(j * j.transpose(), 1, 0.7 * j.col(0)), 0.5, 1e-12);  // r = J delta
  for (Sampling s : kSchemes)
    for (Eigen::Index b : {1, 2, 3}) {
      const auto bd = sgdstab::stability_bounds(g, b, s);
      const double gam = gamma_of(s, 3, static_cast<double>(b));
      const double a = 14.0 / 3.0, s2 = 98.0 / 9.0;
      const double alpha = s == Sampling::bernoulli ? 1.0 : 1.0 - gam;
      const double q = alpha * a * a + gam * (a * a + s2);  // E[H_xi^2]
      EXPECT_REL_NEAR(bd.eta_star, 2.0 * a / q, 1e-10);
      // In 1-D the sufficient and both Mulayoff conditions are exact.
      EXPECT_REL_NEAR(bd.eta_sufficient, bd.eta_star, 1e-10);
      EXPECT_REL_NEAR(bd.eta_necessary_rank1, bd.eta_star, 1e-10);
      EXPECT_REL_NEAR(bd.eta_necessary_trace, bd.eta_star, 1e-10);
      EXPECT_REL_NEAR(bd.non_uniformity, std::sqrt(s2), 1e-12);
      EXPECT_REL_NEAR(bd.sharpness, a, 1e-12);
      if (gam > 0) {
        ASSERT_TRUE(bd.eta_alignment.has_value());
        EXPECT_REL_NEAR(*bd.eta_alignment, 1.0 / (std::sqrt(gam) * std::sqrt(s2)), 1e-10);
        EXPECT_GE(*bd.eta_alignment, bd.eta_star * (1 - 1e-12));
      } else {
        EXPECT_FALSE(bd.eta_alignment.has_value());  // B = n without replacement: no noise
      }
    }
}

TEST(Bounds, SampleAndParameterSpaceAlignmentAgree) {
  for (Eigen::Index c : {1, 2, 3})
    for (std::uint64_t seed : {1, 2, 3}) {
      const MatrixXd j = ref::gaussian(5 * c, 7, seed + 10 * static_cast<std::uint64_t>(c));
      const VectorXd r = ref::gaussian(5 * c, 1, seed + 100).col(0);
      const double mu = sgdstab::alignment(j * j.transpose(), c, r);
      EXPECT_REL_NEAR(mu, sgdstab::alignment_from_jacobian(j, c, r), 1e-12);
      EXPECT_GE(mu, 0.0);
    }
}

TEST(Bounds, WorstCaseAlignmentIsTheMinimumOverDirections) {
  for (Eigen::Index c : {1, 2}) {
    const MatrixXd j = ref::gaussian(6 * c, 4, 7 + static_cast<std::uint64_t>(c));
    const auto g = sgdstab::Geometry::from_jacobian(j, c);
    const auto w = sgdstab::worst_case_alignment(g);
    // Attained: delta = J^+ u reproduces the residual direction u.
    const VectorXd delta = j.completeOrthogonalDecomposition().solve(w.residual_direction);
    EXPECT_LT((j * delta - w.residual_direction).norm(), 1e-10);
    EXPECT_REL_NEAR(sgdstab::alignment_from_jacobian(j, c, j * delta), w.mu_star, 1e-10);
    // A minimum: no random direction does better.
    for (std::uint64_t s = 0; s < 200; ++s) {
      const VectorXd d = ref::gaussian(4, 1, 1000 + s).col(0);
      EXPECT_GE(sgdstab::alignment_from_jacobian(j, c, j * d), w.mu_star * (1 - 1e-10));
    }
  }
}

TEST(Bounds, EveryBoundMatchesEnumerationAndSitsOnTheRightSide) {
  int checked = 0;
  for (Eigen::Index c : {1, 2})
    for (std::uint64_t seed = 0; seed < 6; ++seed) {
      const Eigen::Index n = 5;
      const MatrixXd j = ref::gaussian(n * c, seed % 2 ? 3 : 8, 50 + seed + 7 * static_cast<std::uint64_t>(c));
      const auto g = sgdstab::Geometry::from_jacobian(j, c);
      for (Sampling s : kSchemes)
        for (Eigen::Index b : {1, 2, 4, 5}) {
          const auto bd = sgdstab::stability_bounds(g, b, s);
          ASSERT_TRUE(bd.converged());
          const ReferenceBounds ref = reference_bounds(j, c, b, s);
          EXPECT_REL_NEAR(bd.eta_sufficient, ref.eta_sufficient, 1e-9);
          EXPECT_REL_NEAR(bd.eta_necessary_rank1, ref.eta_rank1, 1e-9);
          EXPECT_REL_NEAR(bd.eta_necessary_trace, ref.eta_trace, 1e-9);
          const double tol = 1e-9 * bd.eta_star;
          EXPECT_LE(bd.eta_sufficient, bd.eta_star + tol);
          EXPECT_GE(bd.eta_gd, bd.eta_star - tol);
          EXPECT_GE(bd.eta_necessary_rank1, bd.eta_star - tol);
          EXPECT_GE(bd.eta_necessary_trace, bd.eta_star - tol);
          if (bd.eta_alignment) EXPECT_GE(*bd.eta_alignment, bd.eta_star - tol);
          if (bd.eta_trace_b1) EXPECT_GE(*bd.eta_trace_b1, bd.eta_star - tol);
          EXPECT_EQ(bd.eta_trace_b1.has_value(), b == 1 && c == 1);
          // Above eta_alignment the loss grows at least by escape_factor > 1 per step.
          if (bd.eta_alignment) EXPECT_GT(bd.escape_factor(1.01 * *bd.eta_alignment), 1.0);
          ++checked;
        }
    }
  EXPECT_EQ(checked, 144);
}

// E L~(delta_{t+1}) = L~((I - lr G) delta) + (lr^2 / 2) gamma Tr(G Sigma_1(delta)), L~ = 1/2 d^T G d,
// by enumeration of every batch (with and without replacement, where Cov = gamma Sigma_1 exactly).
TEST(Bounds, OneStepIdentityHoldsByEnumeration) {
  const MatrixXd j = ref::gaussian(5, 3, 4);
  const auto h = ref::per_sample(j, 1);
  const MatrixXd gm = j.transpose() * j / 5.0;
  const VectorXd delta = ref::gaussian(3, 1, 5).col(0);
  const double lr = 0.3;
  for (Sampling s : {Sampling::without_replacement, Sampling::with_replacement})
    for (Eigen::Index b : {1, 2, 3}) {
      const ref::Moments m = ref::enumerate(h, b, s);
      const MatrixXd dd = delta * delta.transpose();
      const double lhs = 0.5 * (delta.dot(gm * delta) - 2 * lr * delta.dot(gm * gm * delta) +
                                lr * lr * gm.cwiseProduct(second_moment(m.kron2, dd)).sum());
      const VectorXd moved = delta - lr * gm * delta;
      MatrixXd sigma = -gm * dd * gm;
      for (const auto& hi : h) sigma += hi * dd * hi / 5.0;
      const double rhs =
          0.5 * moved.dot(gm * moved) + 0.5 * lr * lr * gamma_of(s, 5, static_cast<double>(b)) * gm.cwiseProduct(sigma).sum();
      EXPECT_REL_NEAR(lhs, rhs, 1e-12);
    }
}

// Population Gaussian regression x ~ N(0, I_p): mu(delta) = 1 + delta^T S^3 delta / (delta^T S delta |S|_F^2)
// = (p + 1) / p; the finite-n estimate approaches it.
TEST(Bounds, GaussianPopulationOracle) {
  const Eigen::Index p = 3;
  const VectorXd delta = VectorXd::Constant(p, 1.0);
  double previous_error = INFINITY;
  for (Eigen::Index n : {2000, 50000}) {
    const MatrixXd x = ref::gaussian(n, p, 77);
    const double mu = sgdstab::alignment_from_jacobian(x, 1, x * delta);
    const double error = std::abs(mu - (p + 1.0) / p);
    EXPECT_LT(error, n == 50000 ? 0.03 : 0.15) << "n = " << n;
    EXPECT_LT(error, previous_error * 1.5);
    previous_error = error;
  }
}

TEST(Bounds, RejectsBadInput) {
  const MatrixXd j = ref::gaussian(4, 3, 1);
  EXPECT_THROW(sgdstab::alignment(j * j.transpose(), 1, VectorXd::Zero(4)), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::alignment(j * j.transpose(), 1, VectorXd::Ones(5)), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::alignment(j * j.transpose(), 3, VectorXd::Ones(4)), sgdstab::invalid_argument);
  VectorXd r = VectorXd::Ones(4);
  r(2) = NAN;
  EXPECT_THROW(sgdstab::alignment_from_jacobian(j, 1, r), sgdstab::invalid_argument);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  EXPECT_THROW(sgdstab::stability_bounds(g, 5), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_bounds(g, 0), sgdstab::invalid_argument);
}

// Above eta_alignment the exact E L~ grows at least by escape_factor(lr) every
// step (theory/bounds.md, section 5), for every scheme.
TEST(Bounds, LossGrowsAtLeastByTheAlignmentFactorAboveItsThreshold) {
  const MatrixXd j = ref::gaussian(6, 4, 91);
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  for (Sampling s : kSchemes) {
    const auto b = sgdstab::stability_bounds(g, 2, s);
    ASSERT_TRUE(b.eta_alignment.has_value());
    const double lr = 1.2 * *b.eta_alignment;
    ASSERT_GT(b.escape_factor(lr), 1.0);
    const auto m = sgdstab::exact_moments(g, lr, 2, s, 8);
    for (std::size_t t = 0; t + 1 < m.loss.size(); ++t)
      EXPECT_GE(m.loss[t + 1], b.escape_factor(lr) * m.loss[t] * (1 - 1e-12)) << sgdstab::to_string(s) << " t " << t;
    // ... and the Monte Carlo estimate of the growth agrees with that lower bound.
    sgdstab::SimulationOptions o;
    o.lr = lr;
    o.batch = 2;
    o.schedule = sgdstab::to_schedule(s);
    o.steps = 3;
    o.trajectories = 20000;
    o.seed = 1;
    const auto sim = sgdstab::simulate_linearized(g, o);
    EXPECT_GT(sim.loss[3].ci_high, std::pow(b.escape_factor(lr), 3) * m.loss[0]);
  }
}

// Along a GD run on a linear model the residual is X (theta_t - theta*), so the
// logged mu(theta_t) is a linearized alignment: never below mu_*.
TEST(Bounds, AlignmentAlongATrainingRun) {
  const MatrixXd x = ref::gaussian(6, 9, 3), y = ref::gaussian(6, 1, 4);
  sgdstab::MlpSpec spec;
  spec.widths = {9, 1};
  sgdstab::Mlp net(spec, 5);
  sgdstab::TrainOptions o;
  o.lr = 0.2;
  o.batch = 2;
  o.max_steps = 3000;
  o.check_every = 100;
  o.residual_tolerance = 1e-12;
  std::vector<sgdstab::AlignmentSample> log;
  o.observer = [&](sgdstab::Index step, const sgdstab::Mlp& m) { log.push_back(sgdstab::alignment_at(m, x, y, step)); };
  ASSERT_TRUE(sgdstab::train_sgd(net, x, y, o).converged());
  ASSERT_GE(log.size(), 3u);
  EXPECT_EQ(log[0].step, 0);
  const auto g = sgdstab::Geometry::from_jacobian(x, 1);
  const double mu_star = sgdstab::worst_case_alignment(g).mu_star;
  for (const auto& a : log) {
    if (std::isnan(a.mu)) continue;
    EXPECT_GE(a.mu, mu_star * (1 - 1e-9)) << "step " << a.step;
    EXPECT_REL_NEAR(a.g_frobenius, (x.transpose() * x / 6.0).norm(), 1e-12);
  }
  // The first entry against the parameter-space formula at the initial residuals.
  sgdstab::Mlp start(spec, 5);
  const MatrixXd r0 = start.residuals(x, y);
  EXPECT_REL_NEAR(log[0].mu, sgdstab::alignment_from_jacobian(x, 1, r0.col(0)), 1e-10);
  EXPECT_REL_NEAR(log[0].loss, start.loss(x, y), 1e-12);
}

// Above the dense cut-off (rank >= 400) the bounds take their eigenvalues
// by Lanczos (the non-uniformity matrix-free). Reference: the closed form of
// E[H_xi^2] for B-subsets without replacement and (1/n) sum h_i^2 - H^2,
// formed in parameter space and eigendecomposed densely.
TEST(Bounds, LargeRankBoundsMatchTheDenseParameterSpaceFormulas) {
  const sgdstab::Index n = 420, p = 440, batch = 7;
  const MatrixXd j = ref::gaussian(n, p, 71) / std::sqrt(static_cast<double>(p));
  const auto g = sgdstab::Geometry::from_jacobian(j, 1);
  ASSERT_EQ(g.rank(), n);
  const auto b = sgdstab::stability_bounds(g, batch, Sampling::without_replacement);
  const double dn = static_cast<double>(n), db = static_cast<double>(batch);
  const MatrixXd h = j.transpose() * j / dn;
  const VectorXd sq = j.rowwise().squaredNorm();                        // h_i^2 = |J_i|^2 h_i for c = 1
  const MatrixXd m = j.transpose() * sq.asDiagonal() * j / dn;           // (1/n) sum h_i^2
  // E[H_xi^2] = (1/B^2) [ (B/n) sum h_i^2 + B(B-1)/(n(n-1)) ((sum h_i)^2 - sum h_i^2) ]
  const double p1 = db / dn, p2 = db * (db - 1) / (dn * (dn - 1));
  const MatrixXd e = (p1 * dn * m + p2 * (dn * dn * h * h - dn * m)) / (db * db);
  const ref::SymEigenSolver eh(h);
  const MatrixXd v = eh.eigenvectors().rightCols(n);
  const VectorXd inv_sqrt = eh.eigenvalues().tail(n).cwiseSqrt().cwiseInverse();
  const MatrixXd a = inv_sqrt.asDiagonal() * (v.transpose() * e * v) * inv_sqrt.asDiagonal();
  const double sufficient = 2.0 / ref::SymEigenSolver(0.5 * (a + a.transpose())).eigenvalues()(n - 1);
  const MatrixXd nu = m - h * h;
  const double non_uniformity =
      std::sqrt(ref::SymEigenSolver(0.5 * (nu + nu.transpose())).eigenvalues()(p - 1));
  EXPECT_REL_NEAR(b.eta_sufficient, sufficient, 1e-9);
  EXPECT_REL_NEAR(b.non_uniformity, non_uniformity, 1e-9);
  EXPECT_REL_NEAR(b.eta_necessary_trace, 2.0 * h.trace() / e.trace(), 1e-9);
  EXPECT_LE(b.eta_sufficient, b.eta_star * (1 + 1e-9));
}

// hessian_measures (theory/bounds.md, section 7) against the parameter-space
// formulas: H = J^T J / n, h_i = J_i^T J_i, (1/n) sum h_i^2 - H^2 formed
// densely and eigendecomposed (Eigen's solver, not LAPACK, not the Gram).
namespace {

struct ParameterMeasures {
  double sharpness, non_uniformity, frobenius, trace;
};

ParameterMeasures parameter_measures(const MatrixXd& j, Eigen::Index c) {
  const Eigen::Index n = j.rows() / c, p = j.cols();
  const double dn = static_cast<double>(n);
  const MatrixXd h = j.transpose() * j / dn;
  MatrixXd m = MatrixXd::Zero(p, p);
  for (Eigen::Index i = 0; i < n; ++i) {
    const MatrixXd hi = j.middleRows(i * c, c).transpose() * j.middleRows(i * c, c);
    m += hi * hi / dn;
  }
  const MatrixXd nu = m - h * h;
  const VectorXd eh = ref::SymEigenSolver(h).eigenvalues();
  const VectorXd en = ref::SymEigenSolver(0.5 * (nu + nu.transpose())).eigenvalues();
  return {eh(p - 1), std::sqrt(std::max(en(p - 1), 0.0)), h.norm(), h.trace()};
}

void expect_measures(const sgdstab::HessianMeasures& got, const ParameterMeasures& want, double tol) {
  ASSERT_TRUE(got.converged()) << got.report.message;
  EXPECT_REL_NEAR(got.sharpness, want.sharpness, tol);
  EXPECT_REL_NEAR(got.non_uniformity, want.non_uniformity, tol);
  EXPECT_REL_NEAR(got.hessian_frobenius, want.frobenius, tol);
  EXPECT_REL_NEAR(got.hessian_trace, want.trace, tol);
}

}  // namespace

TEST(HessianMeasures, MatchTheParameterSpaceFormulasDenseAndLanczos) {
  // p < n c (K singular, rank 20 of 36) and p > n c (K definite), c = 1 and 3.
  for (const auto& [n, c, p] : {std::tuple<int, int, int>{12, 3, 20}, {12, 3, 60}, {30, 1, 12}, {9, 2, 50}}) {
    const MatrixXd j = ref::gaussian(n * c, p, 100 + n + c + p);
    const MatrixXd k = j * j.transpose();
    const ParameterMeasures want = parameter_measures(j, c);
    for (const auto method : {sgdstab::Method::dense, sgdstab::Method::lanczos}) {
      SCOPED_TRACE("n " + std::to_string(n) + " c " + std::to_string(c) + " p " + std::to_string(p) +
                   (method == sgdstab::Method::dense ? " dense" : " lanczos"));
      sgdstab::SolverOptions o;
      o.method = method;
      // A definite K: the Lanczos path must converge on its own. A singular one (p < n c) may
      // stop when its vectors drift into null(K) and be redone densely (the next test).
      const bool definite = p >= n * c;
      o.dense_fallback_max_dimension = definite ? 0 : 8000;
      const auto got = sgdstab::hessian_measures(k, c, o);
      expect_measures(got, want, 1e-8);
      EXPECT_EQ(got.samples, n);
      if (definite) EXPECT_EQ(got.report.method, method);
    }
  }
}

TEST(HessianMeasures, LargeGramByLanczosMatchesParameterSpaceAndTheGeometry) {
  // n c = 800 > dense_max_dimension: automatic takes the matrix-free path;
  // one sample with 4x larger rows makes the non-uniformity large.
  const Eigen::Index n = 400, c = 2, p = 300;
  MatrixXd j = ref::gaussian(n * c, p, 7) / std::sqrt(static_cast<double>(p));
  j.middleRows(10 * c, c) *= 4.0;
  const MatrixXd k = j * j.transpose();
  const auto got = sgdstab::hessian_measures(k, c);
  EXPECT_EQ(got.report.method, sgdstab::Method::lanczos);
  EXPECT_GT(got.report.iterations, 2);
  expect_measures(got, parameter_measures(j, c), 1e-8);
  const auto b = sgdstab::stability_bounds(sgdstab::Geometry::from_jacobian(j, c), 5);
  EXPECT_REL_NEAR(got.non_uniformity, b.non_uniformity, 1e-8);
  EXPECT_REL_NEAR(got.sharpness, b.sharpness, 1e-9);
}

TEST(HessianMeasures, ExtremeScalesAndDegenerateCases) {
  const MatrixXd j = ref::gaussian(24, 10, 5);
  const ParameterMeasures want = parameter_measures(j, 2);
  const double s = 1e150;  // K ~ 1e300: nothing may overflow
  const auto big = sgdstab::hessian_measures(s * s * (j * j.transpose()), 2);
  ASSERT_TRUE(big.converged()) << big.report.message;
  EXPECT_REL_NEAR(big.sharpness / (s * s), want.sharpness, 1e-9);
  EXPECT_REL_NEAR(big.non_uniformity / (s * s), want.non_uniformity, 1e-9);
  EXPECT_REL_NEAR(big.hessian_frobenius / (s * s), want.frobenius, 1e-9);
  EXPECT_REL_NEAR(big.hessian_trace / (s * s), want.trace, 1e-12);
  const auto tiny = sgdstab::hessian_measures(1e-300 * (j * j.transpose()), 2);  // entries down to subnormal
  ASSERT_TRUE(tiny.converged()) << tiny.report.message;
  EXPECT_REL_NEAR(tiny.sharpness / 1e-300, want.sharpness, 1e-9);
  // One sample: h_1 = H, s = 0; K = 0: every measure 0.
  const MatrixXd j1 = ref::gaussian(3, 7, 6);
  const auto one = sgdstab::hessian_measures(j1 * j1.transpose(), 3);
  ASSERT_TRUE(one.converged());
  EXPECT_NEAR(one.non_uniformity, 0.0, 1e-7 * one.sharpness);
  const auto zero = sgdstab::hessian_measures(MatrixXd::Zero(6, 6), 2);
  EXPECT_TRUE(zero.converged());
  EXPECT_EQ(zero.sharpness, 0.0);
  EXPECT_EQ(zero.non_uniformity, 0.0);
  // Identical samples: every h_i = H, s = 0 (Lanczos reaches an invariant subspace).
  MatrixXd rep(40, 6);
  for (int i = 0; i < 20; ++i) rep.middleRows(2 * i, 2) = j.topRows(2).leftCols(6);
  sgdstab::SolverOptions o;
  o.method = sgdstab::Method::lanczos;
  o.dense_fallback_max_dimension = 0;
  const auto same = sgdstab::hessian_measures(rep * rep.transpose(), 2, o);
  ASSERT_TRUE(same.converged()) << same.report.message;
  EXPECT_LE(same.non_uniformity, 1e-6 * same.sharpness);
}

TEST(HessianMeasures, SingularGramsByLanczosAreRightOrSayTheyAreNot) {
  // p < n c without an outlier (a review's cases: the null-space drift once gave s^2 7.5x too
  // large, "converged"): Lanczos alone is right or not converged; with the fallback, right.
  for (const auto& [n, c, p] : {std::tuple<int, int, int>{400, 2, 300}, {100, 10, 30}, {60, 3, 100}}) {
    SCOPED_TRACE("n " + std::to_string(n) + " c " + std::to_string(c) + " p " + std::to_string(p));
    const MatrixXd j = ref::gaussian(n * c, p, 300 + p) / std::sqrt(static_cast<double>(p));
    const MatrixXd k = j * j.transpose();
    const ParameterMeasures want = parameter_measures(j, c);
    sgdstab::SolverOptions o;
    o.method = sgdstab::Method::lanczos;
    o.dense_fallback_max_dimension = 0;
    const auto alone = sgdstab::hessian_measures(k, c, o);
    if (alone.converged())
      EXPECT_REL_NEAR(alone.non_uniformity, want.non_uniformity, 1e-8) << alone.report.message;
    else
      EXPECT_NE(alone.report.message.find("drifted"), std::string::npos) << alone.report.message;
    o.dense_fallback_max_dimension = 8000;
    expect_measures(sgdstab::hessian_measures(k, c, o), want, 1e-8);
  }
}

TEST(HessianMeasures, UnconvergedLanczosSaysSoAndGivesALowerEstimate) {
  const Eigen::Index n = 60, c = 2, p = 80;
  const MatrixXd j = ref::gaussian(n * c, p, 9);
  const ParameterMeasures want = parameter_measures(j, c);
  sgdstab::SolverOptions o;
  o.method = sgdstab::Method::lanczos;
  o.subspace_dimension = 3;
  o.dense_fallback_max_dimension = 0;
  const auto got = sgdstab::hessian_measures(j * j.transpose(), c, o);
  EXPECT_EQ(got.status(), sgdstab::Status::not_converged);
  EXPECT_NE(got.report.message.find("not converged"), std::string::npos) << got.report.message;
  EXPECT_LE(got.non_uniformity, want.non_uniformity * (1 + 1e-12));
  EXPECT_GT(got.non_uniformity, 0.0);
  // With the fallback allowed, the dense path finishes the job.
  o.dense_fallback_max_dimension = 8000;
  const auto fixed = sgdstab::hessian_measures(j * j.transpose(), c, o);
  expect_measures(fixed, want, 1e-8);
  EXPECT_NE(fixed.report.message.find("redone densely"), std::string::npos) << fixed.report.message;
}

TEST(HessianMeasures, BadGramsAreNamed) {
  const MatrixXd j = ref::gaussian(6, 4, 3);
  const MatrixXd k = j * j.transpose();
  const auto fails_with = [](const MatrixXd& g, Eigen::Index c, const std::string& text,
                             sgdstab::Method m = sgdstab::Method::automatic) {
    sgdstab::SolverOptions o;
    o.method = m;
    try {
      sgdstab::hessian_measures(g, c, o);
      ADD_FAILURE() << "accepted: expected an error containing '" << text << "'";
    } catch (const sgdstab::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  fails_with(MatrixXd(k.topRows(5)), 1, "square");
  fails_with(k, 4, "divide");
  MatrixXd bad = k;
  bad(2, 3) = std::nan("");
  fails_with(bad, 2, "NaN");
  bad = k;
  bad(1, 0) += 1.0;
  fails_with(bad, 2, "not symmetric");
  // A Gram minus a large rank-one term: the dense path sees the negative
  // eigenvalue, the matrix-free one a Lanczos vector with x^T K x < 0 (it
  // cannot see an indefiniteness its vectors never meet: the header says so).
  const MatrixXd j40 = ref::gaussian(40, 60, 4);
  const VectorXd e = ref::gaussian(40, 1, 8).col(0).normalized();
  const MatrixXd indefinite = j40 * j40.transpose() - 400.0 * e * e.transpose();
  fails_with(indefinite, 2, "not positive semidefinite", sgdstab::Method::dense);
  fails_with(indefinite, 2, "not positive semidefinite", sgdstab::Method::lanczos);
}
