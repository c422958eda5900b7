// The reduction to range(H) and its input validation.
#include <gtest/gtest.h>

#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sgdstab::invalid_argument& e) {
    return e.what();
  }
  return "(no exception)";
}

#define EXPECT_ERROR_MENTIONS(stmt, text) \
  EXPECT_NE(error_of([&] { stmt; }).find(text), std::string::npos) << error_of([&] { stmt; })

TEST(Geometry, ReducedCoordinatesReproduceTheHessians) {
  const MatrixXd J = ref::gaussian(15, 8, 51);  // n = 5, c = 3
  for (auto space : {sgdstab::Space::parameter, sgdstab::Space::sample}) {
    sgdstab::ReductionOptions o;
    o.space = space;
    const auto g = sgdstab::Geometry::from_jacobian(J, 3, o);
    EXPECT_EQ(g.samples(), 5);
    EXPECT_EQ(g.outputs(), 3);
    EXPECT_EQ(g.params(), 8);
    ASSERT_EQ(g.rank(), 8);
    const VectorXd scale = (5.0 * g.hessian_eigenvalues()).cwiseInverse();
    const MatrixXd V = J.transpose() * g.factor() * scale.asDiagonal();
    const MatrixXd H = J.transpose() * J / 5.0;
    EXPECT_LE((V * g.hessian_eigenvalues().asDiagonal() * V.transpose() - H).norm(), 1e-12 * H.norm());
    for (Eigen::Index i = 0; i < 5; ++i) {
      const MatrixXd hi = J.middleRows(3 * i, 3).transpose() * J.middleRows(3 * i, 3);
      EXPECT_LE((V * g.per_sample_hessian(i) * V.transpose() - hi).norm(), 1e-12 * hi.norm());
    }
    ref::SymEigenSolver es(H);
    EXPECT_REL_NEAR(g.lambda_max(), es.eigenvalues().maxCoeff(), 1e-12);
    EXPECT_REL_NEAR(g.hessian_trace(), H.trace(), 1e-12);
    EXPECT_REL_NEAR(g.hessian_frobenius(), H.norm(), 1e-12);
    for (Eigen::Index k = 1; k < g.rank(); ++k)
      EXPECT_GE(g.hessian_eigenvalues()(k - 1), g.hessian_eigenvalues()(k));
  }
}

TEST(Geometry, RowMajorJacobianIsReadInPlaceAndReproducesTheHessians) {
  // Both spaces (n c = 15 < p = 20: sample; n c = 15 > p = 6: parameter),
  // checked against dense H and K built here, not against from_jacobian.
  for (const Eigen::Index p : {20, 6}) {
    const MatrixXd J = ref::gaussian(15, p, 57);  // n = 5, c = 3
    const sgdstab::RowMatrixXd Jr = J;
    const Eigen::Map<const sgdstab::RowMatrixXd> view(Jr.data(), Jr.rows(), Jr.cols());
    const auto g = sgdstab::Geometry::from_row_major_jacobian(view, 3);
    EXPECT_EQ(g.space(), p > 15 ? sgdstab::Space::sample : sgdstab::Space::parameter);
    EXPECT_EQ(g.params(), p);
    const MatrixXd H = J.transpose() * J / 5.0, K = J * J.transpose();
    ref::SymEigenSolver es(H);
    ASSERT_EQ(g.rank(), std::min<Eigen::Index>(15, p));
    const VectorXd top = es.eigenvalues().reverse().head(g.rank());
    EXPECT_LE((g.hessian_eigenvalues() - top).norm(), 1e-12 * top.norm());
    // Z Z^T = K and Z^T Z = n diag(d) (theory/reduction.md, eq. 2).
    EXPECT_LE((g.factor() * g.factor().transpose() - K).norm(), 1e-12 * K.norm());
    const MatrixXd ztz = g.factor().transpose() * g.factor();
    EXPECT_LE((ztz - MatrixXd(5.0 * g.hessian_eigenvalues().asDiagonal())).norm(), 1e-12 * ztz.norm());
  }
  // Far from unit scale it is rescaled like the column-major path.
  const MatrixXd unit = ref::gaussian(6, 9, 58);
  const sgdstab::RowMatrixXd tiny = unit * 1e-150;
  const auto gt = sgdstab::Geometry::from_row_major_jacobian(tiny, 2);
  ref::SymEigenSolver est(unit.transpose() * unit / 3.0);
  EXPECT_REL_NEAR(gt.lambda_max() / 1e-300, est.eigenvalues().maxCoeff(), 1e-12);
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_row_major_jacobian(sgdstab::RowMatrixXd(ref::gaussian(5, 3, 1)), 2),
                        "not divisible by outputs C = 2");
}

TEST(Geometry, RankToleranceIsExposedAndDocumentedDefaultDropsRoundOff) {
  // J = U diag(sigma) V^T with singular values 1, 0.5, 1e-3, 1e-9 (Gram eigenvalues squared).
  const MatrixXd U = ref::random_orthogonal(6, 52).leftCols(4), V = ref::random_orthogonal(5, 53).leftCols(4);
  const VectorXd sigma = (VectorXd(4) << 1.0, 0.5, 1e-3, 1e-9).finished();
  const MatrixXd J = U * sigma.asDiagonal() * V.transpose();
  const auto def = sgdstab::Geometry::from_jacobian(J, 1);
  EXPECT_EQ(def.rank(), 3);  // 1e-18 relative is below 10 * 6 * eps
  EXPECT_NEAR(def.largest_discarded(), 0.0, 1e-16);
  sgdstab::ReductionOptions loose;
  loose.rank_tolerance = 1e-4;  // drops the 1e-6 relative eigenvalue too
  const auto g2 = sgdstab::Geometry::from_jacobian(J, 1, loose);
  EXPECT_EQ(g2.rank(), 2);
  EXPECT_REL_NEAR(g2.largest_discarded(), 1e-6, 1e-6);
  // the Gram path uses the same cut-off
  EXPECT_EQ(sgdstab::Geometry::from_gram(J * J.transpose(), 1, loose).rank(), 2);
}

TEST(Geometry, BadJacobiansAreRejectedWithTheProblemNamed) {
  const MatrixXd J = ref::gaussian(6, 4, 54);
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(J, 4), "not divisible by outputs C = 4");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(J, 0), "outputs C must be >= 1");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(MatrixXd(0, 3), 1), "empty");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(MatrixXd(3, 0), 1), "0 columns");
  MatrixXd bad = J;
  bad(2, 3) = std::nan("");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(bad, 1), "entry (2, 3) is not finite");
  bad(2, 3) = std::numeric_limits<double>::infinity();
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(bad, 1), "not finite");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(MatrixXd::Zero(6, 4), 2), "rank 0");
  sgdstab::ReductionOptions o;
  o.rank_tolerance = std::nan("");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_jacobian(J, 1, o), "rank_tolerance");
}

TEST(Geometry, BadGramsAreRejectedWithTheProblemNamed) {
  const MatrixXd J = ref::gaussian(6, 8, 55);
  const MatrixXd K = J * J.transpose();
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(K.leftCols(5), 1), "must be square");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(K, 4), "not divisible by outputs C = 4");
  MatrixXd asym = K;
  asym(0, 1) += 1e-3 * K.cwiseAbs().maxCoeff();
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(asym, 1), "not symmetric");
  MatrixXd indefinite = K;
  indefinite(0, 0) -= 2.0 * K.norm();  // symmetric, with a clearly negative eigenvalue
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(indefinite, 1), "not positive semidefinite");
  MatrixXd nan = K;
  nan(1, 1) = std::nan("");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(nan, 1), "not finite");
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(MatrixXd::Zero(4, 4), 1), "rank 0");
  sgdstab::ReductionOptions ps;
  ps.space = sgdstab::Space::parameter;
  EXPECT_ERROR_MENTIONS(sgdstab::Geometry::from_gram(K, 1, ps), "needs a Jacobian");
}

TEST(Geometry, TooLargeForMemoryFailsBeforeAllocating) {
  sgdstab::ReductionOptions o;
  o.memory_limit_bytes = 1e4;
  EXPECT_THROW(sgdstab::Geometry::from_jacobian(ref::gaussian(100, 50, 56), 1, o), sgdstab::resource_error);
  try {
    sgdstab::check_memory(3.0 * 1024 * 1024 * 1024, "test computation", 1024.0 * 1024 * 1024);
    FAIL();
  } catch (const sgdstab::resource_error& e) {
    EXPECT_NE(std::string(e.what()).find("3.0 GiB"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1.0 GiB"), std::string::npos) << e.what();
  }
  EXPECT_GT(sgdstab::available_memory_bytes(), 0u);
  // Against the machine's memory (limit 0): more than it has fails, below
  // the floor passes unread; an explicit limit applies at every size.
  const double more = 2.0 * static_cast<double>(sgdstab::available_memory_bytes()) + 1e12;
  EXPECT_THROW(sgdstab::check_memory(more, "test computation"), sgdstab::resource_error);
  EXPECT_NO_THROW(sgdstab::check_memory(sgdstab::kMemoryCheckFloor, "test computation"));
  EXPECT_THROW(sgdstab::check_memory(1000.0, "test computation", 999.0), sgdstab::resource_error);
}

}  // namespace

namespace {
// A strided view (a block of a larger matrix) gives the same geometry as a copy.
TEST(Geometry, StridedJacobianViewEqualsCopy) {
  const MatrixXd big = ref::gaussian(20, 15, 57);
  for (auto space : {sgdstab::Space::parameter, sgdstab::Space::sample}) {
    sgdstab::ReductionOptions o;
    o.space = space;
    const auto view = sgdstab::Geometry::from_jacobian(big.block(2, 3, 12, 9), 2, o);
    const MatrixXd copy = big.block(2, 3, 12, 9);
    const auto ref_g = sgdstab::Geometry::from_jacobian(copy, 2, o);
    ASSERT_EQ(view.rank(), ref_g.rank());
    EXPECT_LE((view.hessian_eigenvalues() - ref_g.hessian_eigenvalues()).norm(),
              1e-12 * ref_g.hessian_eigenvalues().norm());
    const MatrixXd H = copy.transpose() * copy / 6.0;
    EXPECT_REL_NEAR(view.hessian_frobenius(), H.norm(), 1e-12);
  }
}
}  // namespace

#undef EXPECT_ERROR_MENTIONS
