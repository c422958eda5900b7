// Scale invariance (theory/scaling.md, issue #15): J and 10^k J give the
// answers the scaling law predicts, for k up to +-150, and the unscaled
// answers match the dense reference (exhaustive batch enumeration), so the
// scaled ones are checked against an independent computation.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "reference.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Geometry;
using sgdstab::Sampling;

namespace {

constexpr int kExponents[] = {-150, -100, -30, 30, 100, 150};
using ref::kSchemes;

struct Problem {
  MatrixXd j;
  Eigen::Index c;
};

Problem problem() { return {ref::gaussian(10, 7, 1501), 2}; }  // n = 5, C = 2, p = 7

double tenpow(int k) { return std::pow(10.0, k); }

TEST(Scale, ThresholdFollowsTheScalingLawFromJacobianAndGram) {
  const Problem pr = problem();
  for (Sampling s : kSchemes) {
    const double exact = ref::make_reference(pr.j, pr.c, 2, s).eta_star();
    const Geometry g0 = Geometry::from_jacobian(pr.j, pr.c);
    EXPECT_REL_NEAR(sgdstab::stability_threshold(g0, 2, s).eta_star, exact, 1e-9);
    for (int k : kExponents) {
      SCOPED_TRACE("10^" + std::to_string(k));
      const MatrixXd js = pr.j * tenpow(k);
      const auto from_j = sgdstab::stability_threshold(Geometry::from_jacobian(js, pr.c), 2, s);
      ASSERT_TRUE(from_j.converged()) << from_j.report.message;
      // eta*(10^k J) = eta*(J) / 10^(2k): two factors 10^-k keep it in range.
      EXPECT_REL_NEAR(from_j.eta_star, exact * tenpow(-k) * tenpow(-k), 1e-9);
      EXPECT_REL_NEAR(from_j.pencil_max * (tenpow(-k) * tenpow(-k)), 1.0 / exact, 1e-9);
      const MatrixXd ks = (js * js.transpose()).eval();
      if (!ks.allFinite()) continue;
      const auto from_k = sgdstab::stability_threshold(Geometry::from_gram(ks, pr.c), 2, s);
      ASSERT_TRUE(from_k.converged()) << from_k.report.message;
      EXPECT_REL_NEAR(from_k.eta_star, exact * tenpow(-k) * tenpow(-k), 1e-9);
    }
  }
}

TEST(Scale, LanczosMethodScalesToo) {
  const Problem pr = problem();
  sgdstab::SolverOptions opt;
  opt.method = sgdstab::Method::lanczos;
  opt.dense_fallback_max_dimension = 0;  // the matrix-free path itself, no dense rescue
  const double exact = ref::make_reference(pr.j, pr.c, 3, Sampling::with_replacement).eta_star();
  for (int k : kExponents) {
    SCOPED_TRACE("10^" + std::to_string(k));
    const auto t = sgdstab::stability_threshold(Geometry::from_jacobian(pr.j * tenpow(k), pr.c), 3,
                                                Sampling::with_replacement, opt);
    ASSERT_TRUE(t.converged()) << t.report.message;
    EXPECT_REL_NEAR(t.eta_star, exact * tenpow(-k) * tenpow(-k), 1e-9);
  }
}

TEST(Scale, SpectralRadiusAtTheScaledLearningRate) {
  const Problem pr = problem();
  const auto r0 = ref::make_reference(pr.j, pr.c, 2, Sampling::without_replacement);
  const double eta = 0.8 * r0.eta_star();
  const double exact = r0.rho(eta);
  for (int k : kExponents) {
    SCOPED_TRACE("10^" + std::to_string(k));
    const Geometry g = Geometry::from_jacobian(pr.j * tenpow(k), pr.c);
    const double lr = eta * tenpow(-k) * tenpow(-k);
    const auto r = sgdstab::spectral_radius(g, lr, 2, Sampling::without_replacement);
    ASSERT_TRUE(r.converged()) << r.report.message;
    EXPECT_REL_NEAR(r.rho, exact, 1e-9);
    EXPECT_EQ(r.lr, lr);  // reported in the caller's units
  }
}

TEST(Scale, BoundsAndAlignmentScale) {
  const Problem pr = problem();
  const Geometry g0 = Geometry::from_jacobian(pr.j, pr.c);
  const auto b0 = sgdstab::stability_bounds(g0, 1, Sampling::with_replacement);
  ASSERT_TRUE(b0.converged());
  ASSERT_GT(b0.mu_star, 0.0);
  const VectorXd res = ref::gaussian(10, 1, 77).col(0);
  const double mu0 = sgdstab::alignment(pr.j * pr.j.transpose(), pr.c, res);
  EXPECT_REL_NEAR(sgdstab::alignment_from_jacobian(pr.j, pr.c, res), mu0, 1e-10);  // independent formula
  for (int k : kExponents) {
    SCOPED_TRACE("10^" + std::to_string(k));
    const double s2 = tenpow(k) * tenpow(k);  // may overflow for the Gram's entries: checked below
    const Geometry g = Geometry::from_jacobian(pr.j * tenpow(k), pr.c);
    const auto b = sgdstab::stability_bounds(g, 1, Sampling::with_replacement);
    ASSERT_TRUE(b.converged()) << b.report.message;
    EXPECT_REL_NEAR(b.mu_star, b0.mu_star, 1e-9);
    EXPECT_REL_NEAR(b.eta_star * tenpow(k) * tenpow(k), b0.eta_star, 1e-9);
    EXPECT_REL_NEAR(b.eta_sufficient * tenpow(k) * tenpow(k), b0.eta_sufficient, 1e-9);
    EXPECT_REL_NEAR(b.eta_necessary_rank1 * tenpow(k) * tenpow(k), b0.eta_necessary_rank1, 1e-9);
    EXPECT_REL_NEAR(b.eta_necessary_trace * tenpow(k) * tenpow(k), b0.eta_necessary_trace, 1e-9);
    ASSERT_TRUE(b.eta_alignment.has_value());
    EXPECT_REL_NEAR(*b.eta_alignment * tenpow(k) * tenpow(k), *b0.eta_alignment, 1e-9);
    EXPECT_REL_NEAR(b.sharpness * tenpow(-k) * tenpow(-k), b0.sharpness, 1e-12);
    EXPECT_REL_NEAR(b.non_uniformity * tenpow(-k) * tenpow(-k), b0.non_uniformity, 1e-9);
    EXPECT_REL_NEAR(b.hessian_frobenius * tenpow(-k) * tenpow(-k), b0.hessian_frobenius, 1e-12);
    // mu from residuals: both J and r rescaled, mu unchanged.
    const VectorXd rs = res * tenpow(-k);
    EXPECT_REL_NEAR(sgdstab::alignment_from_jacobian(pr.j * tenpow(k), pr.c, rs), mu0, 1e-10);
    if (std::isfinite(s2) && s2 > 0) {
      const MatrixXd ks = (pr.j * tenpow(k)) * (pr.j * tenpow(k)).transpose();
      if (ks.allFinite() && ks.cwiseAbs().minCoeff() > 1e-290)
        EXPECT_REL_NEAR(sgdstab::alignment(ks, pr.c, rs), mu0, 1e-10);
    }
  }
}

TEST(Scale, PowersOfTwoGiveTheSameAnswersToRounding) {
  const Problem pr = problem();
  const Geometry g0 = Geometry::from_jacobian(pr.j, pr.c);
  const double t0 = sgdstab::stability_threshold(g0, 2).eta_star;
  for (int e : {-480, -300, 300, 480}) {
    const Geometry g = Geometry::from_jacobian(pr.j * std::ldexp(1.0, e), pr.c);
    EXPECT_REL_NEAR(std::ldexp(sgdstab::stability_threshold(g, 2).eta_star, 2 * e), t0, 1e-12);
  }
}

TEST(Scale, RegionPointsAndBandScale) {
  const Problem pr = problem();
  const std::vector<Sampling> schemes(std::begin(kSchemes), std::end(kSchemes));
  const std::vector<Eigen::Index> batches{1, 2, 5};
  const auto r0 = sgdstab::stability_region(Geometry::from_jacobian(pr.j, pr.c), schemes, batches);
  ASSERT_TRUE(r0.converged());
  for (int k : {-150, 150}) {
    SCOPED_TRACE("10^" + std::to_string(k));
    const auto r = sgdstab::stability_region(Geometry::from_jacobian(pr.j * tenpow(k), pr.c), schemes, batches);
    ASSERT_TRUE(r.converged()) << r.report.message;
    const double back = tenpow(k) * tenpow(k);
    EXPECT_REL_NEAR(r.lambda_max / back, r0.lambda_max, 1e-12);
    EXPECT_REL_NEAR(r.eta_gd * back, r0.eta_gd, 1e-12);
    for (std::size_t c = 0; c < r.curves.size(); ++c)
      for (std::size_t i = 0; i < batches.size(); ++i) {
        const auto& p = r.curves[c].points[i];
        const auto& q = r0.curves[c].points[i];
        EXPECT_REL_NEAR(p.eta_star * back, q.eta_star, 1e-9);
        EXPECT_LE(p.eta_low, p.eta_star);
        EXPECT_GE(p.eta_high, p.eta_star);
      }
    const auto band = r.band(Sampling::with_replacement, 3.5);
    const auto band0 = r0.band(Sampling::with_replacement, 3.5);
    EXPECT_REL_NEAR(band.low * back, band0.low, 1e-9);
    EXPECT_REL_NEAR(band.high * back, band0.high, 1e-9);
  }
}

TEST(Scale, HessianBeyondDoubleRangeIsAClearError) {
  const Problem pr = problem();
  // |J| ~ 1e160: lambda_max(H) ~ 1e320 does not fit in a double.
  EXPECT_THROW(Geometry::from_jacobian(pr.j * 1e160, pr.c), sgdstab::invalid_argument);
}

}  // namespace
