// Sampling factors against exhaustive enumeration of batches (scalar h_i):
// E[H_xi S H_xi] = alpha H S H + beta (1/n) sum h_i S h_i must hold for
// matrices h_i that do not commute, so test with 2 x 2 per-sample Hessians.
#include <gtest/gtest.h>

#include "reference.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/sampling.hpp"

using Eigen::MatrixXd;
using sgdstab::Sampling;

TEST(Sampling, FactorsReproduceEnumeratedSecondMoment) {
  for (Eigen::Index n : {1, 2, 3, 5, 6}) {
    const MatrixXd J = ref::gaussian(n, 2, 40 + n);
    const auto h = ref::per_sample(J, 1);
    MatrixXd H = MatrixXd::Zero(2, 2), mean_sq = MatrixXd::Zero(4, 4);
    for (const auto& hi : h) H += hi / static_cast<double>(n);
    for (const auto& hi : h)
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) mean_sq.block(2 * a, 2 * b, 2, 2) += hi(a, b) * hi / static_cast<double>(n);
    MatrixXd HH(4, 4);
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) HH.block(2 * a, 2 * b, 2, 2) = H(a, b) * H;
    for (Sampling s : {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli}) {
      for (Eigen::Index B = 1; B <= n; ++B) {
        const auto f = sgdstab::sampling_factors(s, n, B);
        const auto m = ref::enumerate(h, B, s);
        EXPECT_LE((m.mean - H).norm(), 1e-12 * H.norm());
        EXPECT_LE((m.kron2 - (f.alpha * HH + f.beta * mean_sq)).norm(), 1e-12 * m.kron2.norm())
            << sgdstab::to_string(s) << " n = " << n << " B = " << B;
      }
    }
  }
}

TEST(Sampling, FullBatchWithoutReplacementIsDeterministic) {
  const auto f = sgdstab::sampling_factors(Sampling::without_replacement, 7, 7);
  EXPECT_EQ(f.alpha, 1.0);
  EXPECT_EQ(f.beta, 0.0);
  const auto one = sgdstab::sampling_factors(Sampling::without_replacement, 1, 1);
  EXPECT_EQ(one.beta, 0.0);
}

TEST(Sampling, NamesRoundTripAndBadInputIsRejected) {
  for (Sampling s : {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli})
    EXPECT_EQ(sgdstab::parse<sgdstab::Sampling>(sgdstab::to_string(s)), s);
  EXPECT_THROW(sgdstab::parse<sgdstab::Sampling>("reshuffle"), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::sampling_factors(Sampling::with_replacement, 5, 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::sampling_factors(Sampling::with_replacement, 5, 6), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::sampling_factors(Sampling::bernoulli, 0, 1), sgdstab::invalid_argument);
  try {
    sgdstab::sampling_factors(Sampling::without_replacement, 5, 9);
    FAIL();
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("1 <= B <= n = 5, got B = 9"), std::string::npos) << e.what();
  }
}
