// The second-moment operator, rho and eta* against brute force: every batch
// enumerated with its probability, dense Kronecker matrices in parameter
// space (tests/reference.hpp), for all three schemes and c = 1, 2, 3.
#include <gtest/gtest.h>

#include "operators/low_precision.hpp"
#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Index;
using sgdstab::Sampling;

namespace {

struct Case {
  Index n, c, p, rank;  // rank < min(nc, p): J built with that rank
  std::uint64_t seed;
};

void PrintTo(const Case& k, std::ostream* os) {
  *os << "n=" << k.n << " c=" << k.c << " p=" << k.p << " rank=" << k.rank << " seed=" << k.seed;
}

MatrixXd make_jacobian(const Case& k) {
  const Index nc = k.n * k.c;
  if (k.rank >= std::min(nc, k.p)) return ref::gaussian(nc, k.p, k.seed);
  return ref::gaussian(nc, k.rank, k.seed) * ref::gaussian(k.rank, k.p, k.seed + 1);
}

// The library's basis of range(H) in parameter space: V = J^T Z diag(1/(n d)).
MatrixXd parameter_basis(const MatrixXd& J, const sgdstab::Geometry& g) {
  const VectorXd scale = (static_cast<double>(g.samples()) * g.hessian_eigenvalues()).cwiseInverse();
  return J.transpose() * g.factor() * scale.asDiagonal();
}

MatrixXd random_symmetric(Index r, std::uint64_t seed) {
  const MatrixXd a = ref::gaussian(r, r, seed);
  return a + a.transpose();
}

using ref::kSchemes;

class OperatorVsEnumeration : public ::testing::TestWithParam<Case> {};

TEST_P(OperatorVsEnumeration, TransitionRhoAndThresholdMatchBruteForce) {
  const Case k = GetParam();
  const MatrixXd J = make_jacobian(k);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(J, k.c);
  const Index expected_rank = std::min({k.n * k.c, k.p, k.rank});
  ASSERT_EQ(g.rank(), expected_rank);
  const MatrixXd V = parameter_basis(J, g);
  ASSERT_LE((V.transpose() * V - MatrixXd::Identity(g.rank(), g.rank())).norm(), 1e-10);

  for (Sampling s : kSchemes) {
    for (Index B = 1; B <= k.n; ++B) {
      SCOPED_TRACE("scheme " + sgdstab::to_string(s) + ", B = " + std::to_string(B));
      const ref::Reference R = ref::make_reference(J, k.c, B, s);
      ASSERT_EQ(R.rank, g.rank());
      const double eta_ref = R.eta_star();

      // eta*: dense and Lanczos.
      sgdstab::SolverOptions dense;
      dense.method = sgdstab::Method::dense;
      const auto td = sgdstab::stability_threshold(g, B, s, dense);
      ASSERT_TRUE(td.converged()) << td.report.message;
      EXPECT_REL_NEAR(td.eta_star, eta_ref, 1e-9);
      if (sgdstab::packed_size(g.rank()) >= 3) {
        sgdstab::SolverOptions lz;
        lz.method = sgdstab::Method::lanczos;
        const auto tl = sgdstab::stability_threshold(g, B, s, lz);
        ASSERT_TRUE(tl.converged()) << tl.report.message;
        // s = 0 (B = n without replacement, or Bernoulli) is the closed form lambda_max(H) / 2
        const bool closed_form = sgdstab::region_coordinates(s, k.n, static_cast<double>(B)).second == 0.0;
        EXPECT_EQ(tl.report.method, closed_form ? sgdstab::Method::dense : sgdstab::Method::lanczos);
        EXPECT_REL_NEAR(tl.eta_star, eta_ref, 1e-9);
      }

      // T applied to a random symmetric matrix on range(H).
      const sgdstab::SecondMomentOperator T(g, B, s);
      const MatrixXd S = random_symmetric(g.rank(), k.seed + 7 * B);
      for (double f : {0.3, 1.0, 1.7}) {
        const double eta = f * eta_ref;
        const MatrixXd lib = V * T.transition(S, eta) * V.transpose();
        const MatrixXd bf = R.apply_T(V * S * V.transpose(), eta);
        EXPECT_LE((lib - bf).norm(), 1e-9 * bf.norm()) << "eta = " << eta;
        // rho(T) on range(H)
        const auto rr = sgdstab::spectral_radius(g, eta, B, s, dense);
        ASSERT_TRUE(rr.converged());
        EXPECT_REL_NEAR(rr.rho, R.rho(eta), 1e-9);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, OperatorVsEnumeration,
    ::testing::Values(Case{6, 1, 4, 99, 11},   // p < nc: parameter space
                      Case{4, 1, 6, 99, 12},   // p > nc: sample space, ker H of dim 2
                      Case{5, 2, 4, 99, 13},   // c = 2, p < nc
                      Case{3, 2, 8, 99, 14},   // c = 2, p > nc
                      Case{4, 3, 5, 99, 15},   // c = 3, p < nc
                      Case{2, 3, 9, 99, 16},   // c = 3, p > nc
                      Case{4, 2, 5, 2, 17},    // rank 2 < min(nc, p)
                      Case{6, 1, 7, 3, 18}),   // rank 3, sample space
    [](const ::testing::TestParamInfo<Case>& info) {
      const Case& k = info.param;
      return "n" + std::to_string(k.n) + "_c" + std::to_string(k.c) + "_p" + std::to_string(k.p) +
             (k.rank < 99 ? "_rank" + std::to_string(k.rank) : std::string());
    });

// Property harness over every scheme: the operator identities that the solver rests on.
TEST(OperatorProperties, SymmetricPsdPreservingAndPackedIsometry) {
  const MatrixXd J = ref::gaussian(12, 7, 3);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(J, 2);
  const Index r = g.rank(), m = sgdstab::packed_size(r);
  for (Sampling s : kSchemes) {
    const sgdstab::SecondMomentOperator T(g, 2, s);
    const sgdstab::PencilOperator P(T);
    const sgdstab::TransitionOperator Tt(T, 0.37);
    const VectorXd x = ref::gaussian(m, 1, 5), y = ref::gaussian(m, 1, 6);
    VectorXd px(m), py(m), tx(m), ty(m);
    P.perform_op(x.data(), px.data());
    P.perform_op(y.data(), py.data());
    Tt.perform_op(x.data(), tx.data());
    Tt.perform_op(y.data(), ty.data());
    // self-adjoint in the packed (= Frobenius) inner product
    EXPECT_NEAR(y.dot(px), x.dot(py), 1e-10 * px.norm() * y.norm());
    EXPECT_NEAR(y.dot(tx), x.dot(ty), 1e-10 * tx.norm() * y.norm());
    // packing is an isometry and unpack inverts pack
    const MatrixXd S = sgdstab::unpack(x, r);
    EXPECT_NEAR(S.norm(), x.norm(), 1e-12 * x.norm());
    EXPECT_LE((sgdstab::pack(S) - x).norm(), 1e-14 * x.norm());
    // Q and T map PSD to PSD
    const MatrixXd G = ref::gaussian(r, 2, 9);
    const MatrixXd psd = G * G.transpose();
    ref::SymEigenSolver eq(T.quadratic(psd)), et(T.transition(psd, 0.9 / g.lambda_max()));
    EXPECT_GE(eq.eigenvalues().minCoeff(), -1e-12 * eq.eigenvalues().cwiseAbs().maxCoeff());
    EXPECT_GE(et.eigenvalues().minCoeff(), -1e-12 * et.eigenvalues().cwiseAbs().maxCoeff());
    // propagate = repeated transition
    const auto seq = T.propagate(psd, 0.5, 3);
    ASSERT_EQ(seq.size(), 4u);
    EXPECT_LE((seq[3] - T.transition(T.transition(T.transition(psd, 0.5), 0.5), 0.5)).norm(),
              1e-12 * seq[3].norm());
  }
}

TEST(OperatorProperties, RejectsBadArguments) {
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(ref::gaussian(6, 4, 1), 1);
  EXPECT_THROW(sgdstab::SecondMomentOperator(g, 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::SecondMomentOperator(g, 7), sgdstab::invalid_argument);
  const sgdstab::SecondMomentOperator T(g, 2);
  EXPECT_THROW(T.transition(MatrixXd::Identity(4, 4), 0.0), sgdstab::invalid_argument);
  EXPECT_THROW(T.transition(MatrixXd::Identity(4, 4), -1.0), sgdstab::invalid_argument);
  EXPECT_THROW(T.transition(MatrixXd::Identity(4, 4), std::nan("")), sgdstab::invalid_argument);
  EXPECT_THROW(T.quadratic(MatrixXd::Identity(3, 3)), sgdstab::invalid_argument);
  MatrixXd asym = MatrixXd::Identity(4, 4);
  asym(0, 1) = 1.0;
  EXPECT_THROW(T.quadratic(asym), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::TransitionOperator(T, 0.0), sgdstab::invalid_argument);
}

}  // namespace

// At r >= 512 the packing runs on several threads (lib/foundations/parallel.hpp;
// the per-sample loops split only at larger n c r, each thread owning its
// samples or columns), and the per-sample loops are unrolled for C = 1..10
// (a generic loop beyond): R x against plain per-sample sums in
// Eigen (no BLAS shortcuts, no packing helpers), in double and in single
// precision. With replacement, E[H_B S H_B] = (1 - 1/B) H S H + (1/B) (1/n)
// sum_i h_i S h_i (B independent draws), with H = diag(d) in the factor's basis.
namespace {

void expect_large_pencil_matches_plain_sums(Index n, Index c, Index batch, std::uint64_t seed) {
  SCOPED_TRACE("n = " + std::to_string(n) + ", C = " + std::to_string(c) + ", B = " + std::to_string(batch));
  const MatrixXd J = ref::gaussian(n * c, 700, seed);
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  const Index r = g.rank();
  ASSERT_GE(r, 512);
  const MatrixXd& z = g.factor();
  const VectorXd& d = g.hessian_eigenvalues();
  const VectorXd x = ref::gaussian(r * (r + 1) / 2, 1, seed + 1);
  // S = A^{-1/2} o unpack(x), unpacked by hand.
  MatrixXd s(r, r);
  Index idx = 0;
  for (Index l = 0; l < r; ++l)
    for (Index k = l; k < r; ++k) {
      const double v = k == l ? x(idx) : x(idx) / std::sqrt(2.0);
      ++idx;
      s(k, l) = s(l, k) = v / std::sqrt(d(k) + d(l));
    }
  MatrixXd sum = MatrixXd::Zero(r, r);
  for (Index i = 0; i < n; ++i) {
    const MatrixXd zi = z.middleRows(i * c, c);
    const MatrixXd mi = zi * s * zi.transpose();
    sum += zi.transpose() * mi * zi;
  }
  sum /= static_cast<double>(n);
  const double b = static_cast<double>(batch);
  const MatrixXd q = (1.0 - 1.0 / b) * (d.asDiagonal() * s * d.asDiagonal()) + sum / b;
  const auto weighted_packed = [&](const MatrixXd& m) {
    VectorXd out(x.size());
    Index k_idx = 0;
    for (Index l = 0; l < r; ++l)
      for (Index k = l; k < r; ++k)
        out(k_idx++) = (k == l ? 1.0 : std::sqrt(2.0)) * m(k, l) / std::sqrt(d(k) + d(l));
    return out;
  };
  const VectorXd expect = weighted_packed(q);
  const sgdstab::SecondMomentOperator t(g, batch, Sampling::with_replacement);
  const sgdstab::PencilOperator op(t);
  VectorXd y(x.size());
  op.perform_op(x.data(), y.data());
  EXPECT_LE((y - expect).norm(), 1e-12 * expect.norm());
  // The single-precision R is the samples' term alone (B = 1).
  const VectorXd expect_sum = weighted_packed(sum);
  const auto low = sgdstab::detail::low_precision_pencil_r(g);
  const Eigen::VectorXf xf = x.cast<float>();
  Eigen::VectorXf yf(x.size());
  low(xf.data(), yf.data());
  EXPECT_LE((yf.cast<double>() - expect_sum).norm(), 1e-5 * expect_sum.norm());
}

}  // namespace

TEST(OperatorProperties, LargePencilMatchesPlainPerSampleSums) {
  expect_large_pencil_matches_plain_sums(150, 4, 1, 91);
  expect_large_pencil_matches_plain_sums(560, 1, 3, 93);
  expect_large_pencil_matches_plain_sums(55, 10, 1, 95);
  expect_large_pencil_matches_plain_sums(45, 12, 3, 97);
}
