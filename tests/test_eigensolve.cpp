// The library's one eigensolver path (lib/solvers/eigensolve.hpp) against Eigen's
// dense solvers: values, statuses, counts, fallbacks.
#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>
#include <cmath>

#include "reference.hpp"
#include "solvers/eigensolve.hpp"

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Status;
namespace detail = sgdstab::detail;

// A symmetric matrix with the given eigenvalues in a random orthonormal basis.
MatrixXd with_spectrum(const VectorXd& values, std::uint64_t seed) {
  const MatrixXd q = ref::random_orthogonal(values.size(), seed);
  return q * values.asDiagonal() * q.transpose();
}

TEST(Eigensolve, LargestEigenpairMatchesEigenDenseAndLanczos) {
  const Eigen::Index n = 60;
  VectorXd values(n);
  for (Eigen::Index i = 0; i < n; ++i) values(i) = 1.0 / (1.0 + static_cast<double>(i)) - 0.3;
  const MatrixXd m = with_spectrum(values, 5);
  const double expect = ref::SymEigenSolver(m).eigenvalues().maxCoeff();
  sgdstab::SolverOptions dense;  // n <= dense_max_dimension: LAPACK
  sgdstab::SolverOptions lanczos;
  lanczos.dense_max_dimension = 0;
  lanczos.tolerance = 1e-12;
  for (const auto& opt : {dense, lanczos}) {
    const detail::Eigenpair e = detail::largest_eigenpair(m, opt, "test");
    ASSERT_EQ(e.report.status, Status::converged) << e.report.message;
    EXPECT_NEAR(e.value, expect, 1e-10);
    EXPECT_NEAR((m * e.vector - e.value * e.vector).norm(), 0.0, 1e-8);
    EXPECT_LE(e.report.residual, 1e-8);
  }
  EXPECT_EQ(detail::largest_eigenpair(m, dense, "test").report.method, sgdstab::Method::dense);
  EXPECT_EQ(detail::largest_eigenpair(m, lanczos, "test").report.method, sgdstab::Method::lanczos);
}

TEST(Eigensolve, ReportsTheApplicationsItMade) {
  const MatrixXd m = with_spectrum(VectorXd::LinSpaced(40, 1.0, 2.0), 6);
  Eigen::Index calls = 0;
  detail::FunctionOperator op(40, [&](const double* x, double* y) {
    ++calls;
    VectorXd::Map(y, 40) = m * VectorXd::Map(x, 40);
  });
  sgdstab::SolverOptions o;
  o.method = sgdstab::Method::lanczos;
  const detail::Eigenpair e = detail::top_eigenpair(op, VectorXd(), o, 0.0, "test");
  ASSERT_TRUE(e.report.converged()) << e.report.message;
  EXPECT_NEAR(e.value, 2.0, 1e-9);
  EXPECT_EQ(e.report.matvecs, calls);  // every application counted, the residual check included
  EXPECT_EQ(op.applications(), calls);
}

TEST(Eigensolve, NonConvergenceIsAStatusWithAMessage) {
  // A clustered spectrum, one restart of a 3-vector subspace, no dense fallback allowed.
  VectorXd values = VectorXd::LinSpaced(200, 1.0, 1.001);
  const MatrixXd m = with_spectrum(values, 7);
  detail::FunctionOperator op(200, [&](const double* x, double* y) { VectorXd::Map(y, 200) = m * VectorXd::Map(x, 200); });
  sgdstab::SolverOptions o;
  o.method = sgdstab::Method::lanczos;
  o.subspace_dimension = 3;
  o.max_iterations = 1;
  o.dense_fallback_max_dimension = 0;
  const detail::Eigenpair e = detail::top_eigenpair(op, VectorXd(), o, 0.0, "test");
  EXPECT_EQ(e.report.status, Status::not_converged);
  EXPECT_NE(e.report.message.find("did not converge"), std::string::npos) << e.report.message;
  EXPECT_NE(e.report.message.find("dense fallback is too large"), std::string::npos) << e.report.message;
  // With the fallback allowed the same problem is answered densely.
  o.dense_fallback_max_dimension = 8000;
  const detail::Eigenpair f = detail::top_eigenpair(op, VectorXd(), o, 0.0, "test");
  ASSERT_TRUE(f.report.converged()) << f.report.message;
  EXPECT_EQ(f.report.method, sgdstab::Method::dense);
  EXPECT_NEAR(f.value, values.maxCoeff(), 1e-12);
}

}  // namespace
