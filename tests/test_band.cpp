// The certified band eta_low <= eta*(B) <= eta_high (include/sgdstab/band.hpp,
// theory/band.md) against eta* by enumeration of every batch in parameter
// space (tests/reference.hpp) at small n, against the exact solver at larger
// n, and the closed form of full-batch GD.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>

#include "reference.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;

// Rounding in the sides' small eigenproblems: a relative 1e-9 either way.
constexpr double kRounding = 1e-9;

}  // namespace

// Every scheme, C = 1..3, B = 1..n, full-rank and rank-deficient Jacobians:
// the band contains eta* from the enumeration, and rho(T) at its sides is on
// the right side of 1 (eta_low stable, eta_high not).
TEST(Band, ContainsTheEnumeratedThresholdForEverySchemeAndBatch) {
  struct Case {
    Eigen::Index n, c, p;
  };
  for (const Case k : {Case{5, 1, 8}, Case{4, 2, 9}, Case{4, 3, 7}, Case{5, 1, 3}}) {  // the last: rank 3 < n
    const MatrixXd j = ref::gaussian(k.n * k.c, k.p, 100 + static_cast<std::uint64_t>(k.n * 10 + k.c));
    const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, k.c);
    for (Sampling s : kSchemes)
      for (Eigen::Index b = 1; b <= k.n; ++b) {
        const ref::Reference r = ref::make_reference(j, k.c, b, s);
        const double eta = r.eta_star();
        const sgdstab::BandResult band = sgdstab::stability_band(g, b, s);
        SCOPED_TRACE("n " + std::to_string(k.n) + " c " + std::to_string(k.c) + " p " + std::to_string(k.p) + " B " +
                     std::to_string(b) + " " + sgdstab::to_string(s));
        ASSERT_TRUE(band.converged()) << band.report.message;
        EXPECT_GT(band.eta_low, 0.0);
        EXPECT_LE(band.eta_low, eta * (1 + kRounding));
        EXPECT_GE(band.eta_high, eta * (1 - kRounding));
        EXPECT_LE(r.rho(band.eta_low), 1 + kRounding);
        EXPECT_GE(r.rho(band.eta_high), 1 - kRounding);
        EXPECT_GE(band.trial_dimension, 1);
        EXPECT_GT(band.report.matvecs, 0);
      }
  }
}

// Larger problems, where the enumeration cannot go: the exact solver's eta*
// (certified to 1e-10) inside the band; a Gaussian Jacobian (H's spectrum
// bunched, Marchenko-Pastur) and one whose columns decay as 0.8^k.
TEST(Band, ContainsTheExactThresholdOnLargerProblems) {
  for (int decaying = 0; decaying <= 1; ++decaying) {
    const Eigen::Index n = 24, c = 2, p = 30;
    MatrixXd j = ref::gaussian(n * c, p, 8 - decaying);
    if (decaying)  // column k scaled by 0.8^k
      for (Eigen::Index k = 0; k < p; ++k) j.col(k) *= std::pow(0.8, static_cast<double>(k));
    const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
    sgdstab::SolverOptions so;
    so.tolerance = 1e-10;
    for (Sampling s : kSchemes)
      for (Eigen::Index b : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(8), n}) {
        const sgdstab::ThresholdResult exact = sgdstab::stability_threshold(g, b, s, so);
        ASSERT_TRUE(exact.converged()) << exact.report.message;
        const sgdstab::BandResult band = sgdstab::stability_band(g, b, s);
        SCOPED_TRACE("decaying " + std::to_string(decaying) + " B " + std::to_string(b) + " " + sgdstab::to_string(s));
        EXPECT_LE(band.eta_low, exact.eta_star * (1 + 1e-8));
        EXPECT_GE(band.eta_high, exact.eta_star * (1 - 1e-8));
        EXPECT_NEAR(band.relative_width, (band.eta_high - band.eta_low) / band.eta_high, 1e-15);
      }
  }
}

// Full-batch GD (B = n without replacement): T(X) = (I - eta H) X (I - eta H),
// eta* = 2 / lambda_max(H), and both sides reach it (the trial space holds
// e_1 e_1^T; X = Pi proves it from below).
TEST(Band, FullBatchGradientDescentIsExact) {
  const Eigen::Index n = 6, c = 2;
  const MatrixXd j = ref::gaussian(n * c, 15, 3);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
  const sgdstab::BandResult band = sgdstab::stability_band(g, n, Sampling::without_replacement);
  EXPECT_REL_NEAR(band.eta_low, 2.0 / g.lambda_max(), 1e-12);
  EXPECT_REL_NEAR(band.eta_high, 2.0 / g.lambda_max(), 1e-12);
  EXPECT_LE(band.relative_width, 1e-12);
}

TEST(Band, RejectsBadArguments) {
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(ref::gaussian(4, 5, 1), 1);
  EXPECT_THROW(sgdstab::stability_band(g, 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_band(g, 5), sgdstab::invalid_argument);
  sgdstab::BandOptions o;
  o.tolerance = 0.0;
  EXPECT_THROW(sgdstab::stability_band(g, 2, Sampling::with_replacement, o), sgdstab::invalid_argument);
  o.tolerance = 1e-3;
  o.exponents = {NAN};
  EXPECT_THROW(sgdstab::stability_band(g, 2, Sampling::with_replacement, o), sgdstab::invalid_argument);
}
