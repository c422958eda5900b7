// eta*(B) and rho(T): closed forms, the defining identity rho(T(eta*)) = 1,
// invariances, and agreement of every path (dense/Lanczos, parameter/sample
// space, Jacobian/Gram input).
#include <gtest/gtest.h>

#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Index;
using sgdstab::Method;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;

sgdstab::SolverOptions with_method(Method m) {
  sgdstab::SolverOptions o;
  o.method = m;
  return o;
}

TEST(Threshold, RadiusIsOneAtThresholdBelowAndAbove) {
  const MatrixXd J = ref::gaussian(16, 9, 21);  // n = 8, c = 2, p = 9
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  for (Sampling s : kSchemes)
    for (Index B : {1, 3, 8})
      for (Method m : {Method::dense, Method::lanczos}) {
        SCOPED_TRACE(sgdstab::to_string(s) + " B = " + std::to_string(B) + " " + sgdstab::to_string(m));
        const auto t = sgdstab::stability_threshold(g, B, s, with_method(m));
        ASSERT_TRUE(t.converged()) << t.report.message;
        const auto at = sgdstab::spectral_radius(g, t.eta_star, B, s, with_method(m));
        ASSERT_TRUE(at.converged()) << at.report.message;
        EXPECT_NEAR(at.rho, 1.0, 1e-8);
        EXPECT_LT(sgdstab::spectral_radius(g, 0.99 * t.eta_star, B, s, with_method(m)).rho, 1.0);
        EXPECT_GT(sgdstab::spectral_radius(g, 1.01 * t.eta_star, B, s, with_method(m)).rho, 1.0);
      }
}

TEST(Threshold, FullBatchWithoutReplacementIsGradientDescent) {
  const MatrixXd J = ref::gaussian(30, 12, 22);  // n = 10, c = 3
  const auto g = sgdstab::Geometry::from_jacobian(J, 3);
  for (Method m : {Method::dense, Method::lanczos}) {
    const auto t = sgdstab::stability_threshold(g, 10, Sampling::without_replacement, with_method(m));
    ASSERT_TRUE(t.converged());
    // lambda_max(H) from an independent dense eigensolver of J^T J / n
    ref::SymEigenSolver es(J.transpose() * J / 10.0);
    EXPECT_REL_NEAR(t.eta_star, 2.0 / es.eigenvalues().maxCoeff(), 1e-10);
  }
}

// Without sampling noise rho(T) is max_k (1 - lr d_k)^2 in closed form (theory/spectral_radius.md, section 1):
// against the map built by enumerating every batch, at small lr (where T's top eigenvalues cluster below 1 and
// Lanczos needs thousands of applications), at eta* and above it; full rank and rank-deficient Jacobians.
TEST(Threshold, FullBatchRadiusIsTheClosedFormOfTheEnumeratedMap) {
  for (const Index p : {9, 20}) {  // nC = 16: rank 9, and rank 16 < p
    const MatrixXd J = ref::gaussian(16, p, 24);
    const auto g = sgdstab::Geometry::from_jacobian(J, 2);
    for (Sampling s : {Sampling::without_replacement, Sampling::bernoulli}) {
      const ref::Reference r = ref::make_reference(J, 2, 8, s);
      const double eta = sgdstab::stability_threshold(g, 8, s).eta_star;
      for (double f : {0.001, 0.3, 1.0, 1.7}) {
        SCOPED_TRACE(sgdstab::to_string(s) + " p = " + std::to_string(p) + " lr = " + std::to_string(f) + " eta*");
        sgdstab::SolverOptions o;
        o.want_direction = true;
        const auto rad = sgdstab::spectral_radius(g, f * eta, 8, s, o);
        ASSERT_TRUE(rad.converged()) << rad.report.message;
        EXPECT_EQ(rad.report.matvecs, 0);
        EXPECT_EQ(rad.report.method, Method::dense);
        EXPECT_REL_NEAR(rad.rho, r.rho(f * eta), 1e-10);
        // its direction is an eigenvector of T applied by the operator (not the closed form)
        const sgdstab::SecondMomentOperator t(g, 8, s);
        ASSERT_EQ(rad.direction.rows(), g.rank());
        EXPECT_LE((t.transition(rad.direction, f * eta) - rad.rho * rad.direction).norm(), 1e-12);
        EXPECT_NEAR(rad.direction.norm(), 1.0, 1e-14);
      }
    }
  }
  // With noise the closed form does not apply: B = 7 of 8 goes to the solver.
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(16, 9, 24), 2);
  EXPECT_GT(sgdstab::spectral_radius(g, 0.1, 7).report.matvecs, 0);
  EXPECT_THROW(sgdstab::spectral_radius(g, 0.1, 9), sgdstab::invalid_argument);
}

TEST(Threshold, NonDecreasingInBatchSize) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(12, 20, 23), 1);
  for (Sampling s : kSchemes) {
    double prev = 0;
    for (Index B = 1; B <= 12; ++B) {
      const auto t = sgdstab::stability_threshold(g, B, s);
      ASSERT_TRUE(t.converged());
      EXPECT_GE(t.eta_star, prev * (1 - 1e-12)) << sgdstab::to_string(s) << " B = " << B;
      prev = t.eta_star;
    }
  }
}

// 1-D: per-sample curvatures a_i, a = mean, s^2 = variance. Stable iff
// (1 - eta a)^2 + eta^2 gamma s^2 <= 1 (without: gamma = (n-B)/(B(n-1)),
// with: gamma = 1/B), i.e. eta* = 2a / (a^2 + gamma s^2). Bernoulli:
// E[H_xi^2] = a^2 + (n-B)/(nB) mean(a_i^2), eta* = 2a / E[H_xi^2].
TEST(Threshold, OneDimensionalClosedForms) {
  const VectorXd sqrt_a = ref::gaussian(7, 1, 24);
  const Index n = 7;
  const VectorXd a_i = sqrt_a.cwiseAbs2();
  const double a = a_i.mean(), m2 = a_i.squaredNorm() / n, s2 = m2 - a * a;
  const auto g = sgdstab::Geometry::from_jacobian(sqrt_a, 1);
  for (Index B = 1; B <= n; ++B) {
    const double nb = static_cast<double>(n), bb = static_cast<double>(B);
    const double g_without = (nb - bb) / (bb * (nb - 1)), g_with = 1.0 / bb;
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g, B, Sampling::without_replacement).eta_star,
                    2 * a / (a * a + g_without * s2), 1e-12);
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g, B, Sampling::with_replacement).eta_star,
                    2 * a / (a * a + g_with * s2), 1e-12);
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g, B, Sampling::bernoulli).eta_star,
                    2 * a / (a * a + (nb - bb) / (nb * bb) * m2), 1e-12);
  }
}

// The classic two-minima toy: f = 1/2 (f1 + f2), f1 = min{x^2, 0.1 (x-1)^2},
// f2 = min{x^2, 1.9 (x-1)^2}. Per-sample curvatures f_i'' are (2, 2) at x = 0
// and (0.2, 3.8) at x = 1: equal sharpness 2, different non-uniformity. At
// eta = 0.7, B = 1, x = 0 is stable and x = 1 is not.
TEST(Threshold, TwoMinimaToy) {
  MatrixXd j0(2, 1), j1(2, 1);
  j0 << std::sqrt(2.0), std::sqrt(2.0);  // h_i = J_i^2 = f_i''
  j1 << std::sqrt(0.2), std::sqrt(3.8);
  const auto g0 = sgdstab::Geometry::from_jacobian(j0, 1), g1 = sgdstab::Geometry::from_jacobian(j1, 1);
  EXPECT_NEAR(g0.lambda_max(), 2.0, 1e-12);
  EXPECT_NEAR(g1.lambda_max(), 2.0, 1e-12);
  for (Sampling s : {Sampling::without_replacement, Sampling::with_replacement}) {
    EXPECT_LT(sgdstab::spectral_radius(g0, 0.7, 1, s).rho, 1.0);
    EXPECT_GT(sgdstab::spectral_radius(g1, 0.7, 1, s).rho, 1.0);
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g0, 1, s).eta_star, 1.0, 1e-12);
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g1, 1, s).eta_star, 4.0 / 7.24, 1e-12);
  }
}

void expect_same_answers(const sgdstab::Geometry& x, const sgdstab::Geometry& y, double tol) {
  ASSERT_EQ(x.rank(), y.rank());
  EXPECT_REL_NEAR(x.lambda_max(), y.lambda_max(), tol);
  EXPECT_REL_NEAR(x.hessian_trace(), y.hessian_trace(), tol);
  EXPECT_REL_NEAR(x.hessian_frobenius(), y.hessian_frobenius(), tol);
  for (Sampling s : kSchemes)
    for (Index B : {Index(1), Index(2), x.samples()}) {
      EXPECT_REL_NEAR(sgdstab::stability_threshold(x, B, s).eta_star,
                      sgdstab::stability_threshold(y, B, s).eta_star, tol);
      EXPECT_REL_NEAR(sgdstab::spectral_radius(x, 0.8, B, s).rho, sgdstab::spectral_radius(y, 0.8, B, s).rho, tol);
    }
}

TEST(Threshold, ParameterSpaceAndSampleSpaceAgree) {
  for (auto [rows, p, c] : {std::tuple<Index, Index, Index>{24, 10, 2}, {12, 30, 3}}) {
    SCOPED_TRACE("nc = " + std::to_string(rows) + ", p = " + std::to_string(p));
    const MatrixXd J = ref::gaussian(rows, p, 25);
    sgdstab::ReductionOptions ps, ss;
    ps.space = sgdstab::Space::parameter;
    ss.space = sgdstab::Space::sample;
    const auto gp = sgdstab::Geometry::from_jacobian(J, c, ps);
    const auto gs = sgdstab::Geometry::from_jacobian(J, c, ss);
    EXPECT_EQ(gp.space(), sgdstab::Space::parameter);
    EXPECT_EQ(gs.space(), sgdstab::Space::sample);
    expect_same_answers(gp, gs, 1e-9);
    // automatic picks the smaller space
    EXPECT_EQ(sgdstab::Geometry::from_jacobian(J, c).space(),
              rows <= p ? sgdstab::Space::sample : sgdstab::Space::parameter);
  }
}

TEST(Threshold, JacobianAndGramInputsAgree) {
  for (auto [rows, p, c] : {std::tuple<Index, Index, Index>{18, 7, 3}, {10, 25, 1}}) {
    const MatrixXd J = ref::gaussian(rows, p, 26);
    expect_same_answers(sgdstab::Geometry::from_jacobian(J, c),
                        sgdstab::Geometry::from_gram(J * J.transpose(), c), 1e-9);
  }
}

TEST(Threshold, InvariantUnderSamplePermutationAndRotationAndScalesAsOneOverSSquared) {
  const Index n = 9, c = 2, p = 11;
  const MatrixXd J = ref::gaussian(n * c, p, 27);
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  // permute samples (blocks of c rows)
  MatrixXd Jp(n * c, p);
  const Index perm[] = {4, 0, 8, 2, 7, 1, 6, 3, 5};
  for (Index i = 0; i < n; ++i) Jp.middleRows(i * c, c) = J.middleRows(perm[i] * c, c);
  expect_same_answers(g, sgdstab::Geometry::from_jacobian(Jp, c), 1e-9);
  // rotate theta
  expect_same_answers(g, sgdstab::Geometry::from_jacobian(J * ref::random_orthogonal(p, 28), c), 1e-9);
  // scale J by s: H scales by s^2, eta* by 1/s^2
  const double s = 3.7;
  const auto gs = sgdstab::Geometry::from_jacobian(s * J, c);
  for (Sampling sc : kSchemes)
    for (Index B : {1, 4, 9})
      EXPECT_REL_NEAR(sgdstab::stability_threshold(gs, B, sc).eta_star,
                      sgdstab::stability_threshold(g, B, sc).eta_star / (s * s), 1e-9);
}

TEST(Threshold, DenseAndLanczosAgreeAtModerateSize) {
  for (auto [n, c, p] : {std::tuple<Index, Index, Index>{40, 1, 30}, {12, 3, 50}}) {
    const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(n * c, p, 29), c);
    for (Sampling s : kSchemes)
      for (Index B : {Index(1), Index(5), n}) {
        const auto d = sgdstab::stability_threshold(g, B, s, with_method(Method::dense));
        const auto l = sgdstab::stability_threshold(g, B, s, with_method(Method::lanczos));
        ASSERT_TRUE(d.converged() && l.converged()) << l.report.message;
        const bool closed_form = sgdstab::region_coordinates(s, n, static_cast<double>(B)).second == 0.0;
        EXPECT_EQ(l.report.method, closed_form ? Method::dense : Method::lanczos);
        EXPECT_REL_NEAR(l.eta_star, d.eta_star, 1e-9);
        // The stopping rule is the error bound (residual^2 / gap), not the residual
        // (theory/region.md, section 4); the comparison with dense above checks it.
        EXPECT_LE(l.report.error_bound, 1e-10);
        EXPECT_LE(l.report.residual, 1e-4);
        EXPECT_LE(ref::rel_diff(l.eta_star, d.eta_star), 2 * l.report.error_bound + 1e-13);
        const auto rd = sgdstab::spectral_radius(g, d.eta_star * 1.1, B, s, with_method(Method::dense));
        const auto rl = sgdstab::spectral_radius(g, d.eta_star * 1.1, B, s, with_method(Method::lanczos));
        ASSERT_TRUE(rl.converged()) << rl.report.message;
        EXPECT_REL_NEAR(rl.rho, rd.rho, 1e-9);
      }
  }
}

TEST(Threshold, CurveMatchesPointwiseThresholds) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(32, 40, 30), 1);
  const auto batches = sgdstab::default_batches(32);
  ASSERT_EQ(batches, (std::vector<Index>{1, 2, 4, 8, 16, 32}));
  const auto curve = sgdstab::threshold_curve(g, batches, Sampling::with_replacement,
                                              with_method(Method::lanczos));
  ASSERT_EQ(curve.size(), batches.size());
  for (std::size_t k = 0; k < curve.size(); ++k) {
    ASSERT_TRUE(curve[k].converged());
    EXPECT_EQ(curve[k].batch, batches[k]);
    EXPECT_REL_NEAR(curve[k].eta_star,
                    sgdstab::stability_threshold(g, batches[k], Sampling::with_replacement,
                                                 with_method(Method::dense)).eta_star, 1e-9);
  }
  EXPECT_EQ(sgdstab::default_batches(1), (std::vector<Index>{1}));
  EXPECT_EQ(sgdstab::default_batches(6), (std::vector<Index>{1, 2, 4, 6}));
}

TEST(Threshold, DirectionIsPsdAndAttainsThePencilMaximum) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(20, 15, 31), 2);
  for (Method m : {Method::dense, Method::lanczos}) {
    sgdstab::SolverOptions o = with_method(m);
    o.want_direction = true;
    const auto t = sgdstab::stability_threshold(g, 2, Sampling::without_replacement, o);
    ASSERT_EQ(t.direction.rows(), g.rank());
    ref::SymEigenSolver es(t.direction);
    EXPECT_GE(es.eigenvalues().minCoeff(), -1e-8);
    EXPECT_NEAR(t.direction.norm(), 1.0, 1e-12);
    const sgdstab::SecondMomentOperator T(g, 2);
    const double q = (t.direction.cwiseProduct(T.quadratic(t.direction))).sum();
    const double a = (t.direction.cwiseProduct(T.anticommutator(t.direction))).sum();
    EXPECT_REL_NEAR(q / a, 1.0 / t.eta_star, 1e-9);
  }
}

TEST(Threshold, NonConvergenceIsReportedAndFallsBackToDense) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(40, 30, 32), 1);
  sgdstab::SolverOptions o = with_method(Method::lanczos);
  o.subspace_dimension = 3;
  o.max_iterations = 1;
  o.tolerance = 1e-14;
  o.dense_fallback_max_dimension = 0;
  const auto bad = sgdstab::stability_threshold(g, 1, Sampling::without_replacement, o);
  EXPECT_FALSE(bad.converged());
  EXPECT_NE(bad.report.message.find("did not converge"), std::string::npos) << bad.report.message;
  o.dense_fallback_max_dimension = 100000;
  const auto fb = sgdstab::stability_threshold(g, 1, Sampling::without_replacement, o);
  EXPECT_TRUE(fb.converged());
  EXPECT_EQ(fb.report.method, Method::dense);
  EXPECT_NE(fb.report.message.find("fell back to the dense method"), std::string::npos) << fb.report.message;
  EXPECT_REL_NEAR(fb.eta_star,
                  sgdstab::stability_threshold(g, 1, Sampling::without_replacement, with_method(Method::dense)).eta_star,
                  1e-12);
}

TEST(Threshold, BadArgumentsAndMemoryLimit) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(10, 6, 33), 1);
  EXPECT_THROW(sgdstab::stability_threshold(g, 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_threshold(g, 11), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::spectral_radius(g, 0.0, 2), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::spectral_radius(g, -1.0, 2), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::spectral_radius(g, std::numeric_limits<double>::infinity(), 2), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::threshold_curve(g, {1, 2, 12}), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::threshold_curve(g, {}), sgdstab::invalid_argument);
  sgdstab::SolverOptions o;
  o.tolerance = 0;
  EXPECT_THROW(sgdstab::stability_threshold(g, 2, Sampling::bernoulli, o), sgdstab::invalid_argument);
  o = {};
  o.subspace_dimension = 2;
  EXPECT_THROW(sgdstab::stability_threshold(g, 2, Sampling::bernoulli, o), sgdstab::invalid_argument);
  o = {};
  o.memory_limit_bytes = 1000;  // far too little for anything
  EXPECT_THROW(sgdstab::stability_threshold(g, 2, Sampling::bernoulli, o), sgdstab::resource_error);
}

}  // namespace
