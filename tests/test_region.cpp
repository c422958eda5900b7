// The stability region (theory/region.md): every point against the
// brute-force enumeration of batches and against the single-point threshold,
// the shared-subspace solver against the dense one (with restarts), the
// closed forms at the ends, and the convex band against exact values off the grid.
#include <gtest/gtest.h>

#include "operators/low_precision.hpp"
#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"
#include "solvers/family.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Index;
using sgdstab::Method;
using sgdstab::Sampling;

namespace {

const std::vector<Sampling> kRegionSchemes = {Sampling::without_replacement, Sampling::with_replacement,
                                        Sampling::bernoulli};

sgdstab::SolverOptions with_region_method(Method m, Index subspace = 0) {
  sgdstab::SolverOptions o;
  o.method = m;
  o.subspace_dimension = subspace;
  return o;
}

std::vector<Index> all_batches(Index n) {
  std::vector<Index> b;
  for (Index k = 1; k <= n; ++k) b.push_back(k);
  return b;
}

// g(s) = lambda_max of the pencil ((1 - s) H (x) H + s (1/n) sum_i h_i (x) h_i, H (+) H)
// on symmetric matrices over range(H), in parameter space.
double reference_g(const MatrixXd& J, Index c, double s) {
  const auto h = ref::per_sample(J, c);
  const auto single = ref::enumerate(h, 1, Sampling::with_replacement);  // (1/n) sum h_i (x) h_i
  const MatrixXd H = J.transpose() * J / static_cast<double>(h.size());
  const Index p = H.rows();
  MatrixXd hh(p * p, p * p);
  for (Index a = 0; a < p; ++a)
    for (Index b = 0; b < p; ++b) hh.block(a * p, b * p, p, p) = H(a, b) * H;
  const MatrixXd basis = ref::sym_range_basis(H);
  const MatrixXd q = basis.transpose() * ((1.0 - s) * hh + s * single.kron2) * basis;
  const MatrixXd a = basis.transpose() * ref::kron_identity_sum(H) * basis;
  ref::GenSymEigenSolver es(0.5 * (q + q.transpose()), 0.5 * (a + a.transpose()));
  return es.eigenvalues().maxCoeff();
}

TEST(Region, EveryPointMatchesEnumerationAndTheSinglePointThreshold) {
  for (Index c : {1, 2, 3}) {
    const Index n = 5;
    const MatrixXd J = ref::gaussian(n * c, 3 + 2 * c, 40 + static_cast<std::uint64_t>(c));
    const auto g = sgdstab::Geometry::from_jacobian(J, c);
    for (Method m : {Method::dense, Method::lanczos}) {
      const auto region = sgdstab::stability_region(g, kRegionSchemes, all_batches(n), with_region_method(m));
      ASSERT_TRUE(region.converged()) << region.report.message;
      ASSERT_EQ(region.curves.size(), 3u);
      for (const auto& curve : region.curves)
        for (const auto& p : curve.points) {
          SCOPED_TRACE("c = " + std::to_string(c) + " " + sgdstab::to_string(curve.sampling) +
                       " B = " + std::to_string(p.batch) + " " + sgdstab::to_string(m));
          ASSERT_TRUE(p.converged()) << p.report.message;
          const double exact = ref::make_reference(J, c, p.batch, curve.sampling).eta_star();
          EXPECT_REL_NEAR(p.eta_star, exact, 1e-9);
          const auto single = sgdstab::stability_threshold(g, p.batch, curve.sampling, with_region_method(Method::dense));
          EXPECT_REL_NEAR(p.eta_star, single.eta_star, 1e-9);
          EXPECT_LE(p.eta_low, exact * (1 + 1e-12));
          EXPECT_GE(p.eta_high, exact * (1 - 1e-12));
          EXPECT_LE(p.eta_high - p.eta_low, 2e-10 * p.eta_star);
        }
    }
  }
}

TEST(Region, ClosedFormsAtTheEnds) {
  const Index n = 9, c = 2;
  const MatrixXd J = ref::gaussian(n * c, 12, 51);
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  const auto region = sgdstab::stability_region(g, kRegionSchemes, {1, 2, 3, 5, 8, 9});
  ASSERT_TRUE(region.converged()) << region.report.message;
  ref::SymEigenSolver es(J.transpose() * J / static_cast<double>(n));
  const double eta_gd = 2.0 / es.eigenvalues().maxCoeff();
  EXPECT_REL_NEAR(region.eta_gd, eta_gd, 1e-12);
  const auto& without = region.curves[0].points;
  const auto& with = region.curves[1].points;
  const auto& bernoulli = region.curves[2].points;
  EXPECT_REL_NEAR(without.back().eta_star, eta_gd, 1e-12);    // B = n without replacement: GD
  EXPECT_REL_NEAR(bernoulli.back().eta_star, eta_gd, 1e-12);  // B = n Bernoulli keeps every sample
  EXPECT_REL_NEAR(with.front().eta_star, without.front().eta_star, 1e-14);  // B = 1: the same scheme
  for (const auto& curve : region.curves)
    for (std::size_t k = 1; k < curve.points.size(); ++k)
      EXPECT_GE(curve.points[k].eta_star, curve.points[k - 1].eta_star * (1 - 1e-12)) << sgdstab::to_string(curve.sampling);
  EXPECT_LT(with.back().eta_star, eta_gd);  // with replacement keeps noise at B = n
}

// m = 465 packed coordinates with an 8-vector subspace: many thick restarts,
// and the subspace shared across 3 schemes x 6 batch sizes.
TEST(Region, SharedSubspaceWithRestartsMatchesDense) {
  const Index n = 20, c = 3;
  MatrixXd J = ref::gaussian(n * c, 30, 52);
  for (Index i = 0; i < n; ++i) J.middleRows(i * c, c) *= 1.0 + 0.2 * static_cast<double>(i % 4);  // uneven samples
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  ASSERT_EQ(g.rank(), 30);
  const std::vector<Index> batches = {1, 2, 4, 8, 16, 20};
  const auto dense = sgdstab::stability_region(g, kRegionSchemes, batches, with_region_method(Method::dense));
  const auto lanczos = sgdstab::stability_region(g, kRegionSchemes, batches, with_region_method(Method::lanczos, 8));
  ASSERT_TRUE(dense.converged()) << dense.report.message;
  ASSERT_TRUE(lanczos.converged()) << lanczos.report.message;
  EXPECT_EQ(dense.report.matvecs, 465);
  EXPECT_GT(lanczos.report.iterations, 0);
  EXPECT_EQ(lanczos.subspace_dimension, 8);
  for (std::size_t k = 0; k < kRegionSchemes.size(); ++k)
    for (std::size_t b = 0; b < batches.size(); ++b) {
      const auto& pl = lanczos.curves[k].points[b];
      const auto& pd = dense.curves[k].points[b];
      SCOPED_TRACE(sgdstab::to_string(kRegionSchemes[k]) + " B = " + std::to_string(batches[b]));
      EXPECT_EQ(pl.report.method, batches[b] == n && kRegionSchemes[k] != Sampling::with_replacement ? Method::dense : Method::lanczos);
      EXPECT_REL_NEAR(pl.eta_star, pd.eta_star, 1e-9);
      EXPECT_LE(pl.eta_low, pd.eta_star * (1 + 1e-12));
      EXPECT_GE(pl.eta_high, pd.eta_star * (1 - 1e-12));
      const auto single = sgdstab::stability_threshold(g, batches[b], kRegionSchemes[k]);
      EXPECT_REL_NEAR(pl.eta_star, single.eta_star, 1e-9);
    }
}

TEST(Region, BandContainsExactValuesOffTheGrid) {
  const Index n = 6, c = 2;
  const MatrixXd J = ref::gaussian(n * c, 7, 53);
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  const auto region = sgdstab::stability_region(g, kRegionSchemes, {1, 3, 6});
  ASSERT_TRUE(region.converged()) << region.report.message;
  for (double s : {0.0, 0.05, 0.2, 0.37, 0.5, 0.81, 0.99, 1.0}) {
    const double exact = reference_g(J, c, s);
    const auto gb = region.g_bounds(s);
    EXPECT_LE(gb.low, exact * (1 + 1e-10)) << "s = " << s;
    EXPECT_GE(gb.high, exact * (1 - 1e-10)) << "s = " << s;
    EXPECT_TRUE(std::isfinite(gb.high)) << "s = " << s;  // s = 0 and s = 1 are knots
  }
  for (Sampling sc : kRegionSchemes)
    for (double B : {1.0, 1.5, 2.0, 2.5, 4.0, 5.5, 6.0}) {
      const auto [cc, s] = sgdstab::region_coordinates(sc, n, B);
      const double eta = 1.0 / (cc * reference_g(J, c, s));
      const auto band = region.band(sc, B);
      SCOPED_TRACE(sgdstab::to_string(sc) + " B = " + std::to_string(B));
      EXPECT_LE(band.low, eta * (1 + 1e-10));
      EXPECT_GE(band.high, eta * (1 - 1e-10));
      EXPECT_GT(band.low, 0.0);
      EXPECT_LE(band.high / band.low, 3.0);  // informative, not just [0, inf]
    }
  // At the computed points the band is the certified interval.
  for (const auto& curve : region.curves)
    for (const auto& p : curve.points) {
      const auto band = region.band(curve.sampling, static_cast<double>(p.batch));
      EXPECT_LE(band.low, p.eta_star);
      EXPECT_GE(band.high, p.eta_star * (1 - 1e-15));
      EXPECT_LE(band.high / band.low - 1.0, 1e-9);
    }
}

TEST(Region, RealBatchCoordinatesMatchTheSamplingFactors) {
  for (Sampling sc : kRegionSchemes)
    for (Index B : {1, 2, 7, 10}) {
      const auto f = sgdstab::sampling_factors(sc, 10, B);
      const auto [c, s] = sgdstab::region_coordinates(sc, 10, static_cast<double>(B));
      EXPECT_REL_NEAR(c, f.alpha + f.beta, 1e-15);
      EXPECT_NEAR(s * c, f.beta, 1e-15);
    }
  EXPECT_THROW(sgdstab::region_coordinates(Sampling::with_replacement, 10, 0.5), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::region_coordinates(Sampling::with_replacement, 10, 10.5), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::region_coordinates(Sampling::with_replacement, 10, std::nan("")), sgdstab::invalid_argument);
}

TEST(Region, BadInputIsRefusedWithANamedReason) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(8, 5, 54), 2);
  auto message = [&](const std::vector<Sampling>& s, const std::vector<Index>& b) -> std::string {
    try {
      sgdstab::stability_region(g, s, b);
    } catch (const sgdstab::invalid_argument& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({}, {1}).find("schemes is empty"), std::string::npos);
  EXPECT_NE(message(kRegionSchemes, {}).find("batch sizes is empty"), std::string::npos);
  EXPECT_NE(message(kRegionSchemes, {1, 5}).find("1 <= B <= n = 4"), std::string::npos);
  EXPECT_NE(message(kRegionSchemes, {0}).find("got B = 0"), std::string::npos);
  EXPECT_NE(message(kRegionSchemes, {2, 2}).find("batch size 2 is repeated"), std::string::npos);
  EXPECT_NE(message({Sampling::bernoulli, Sampling::bernoulli}, {1}).find("'bernoulli' is repeated"),
            std::string::npos);
  sgdstab::SolverOptions bad;
  bad.tolerance = -1;
  EXPECT_THROW(sgdstab::stability_region(g, kRegionSchemes, {1}, bad), sgdstab::invalid_argument);
}

// A cap of one restart on a 4-vector subspace cannot certify a clustered
// member: the point says so, and the dense fallback (or its refusal) is recorded.
TEST(Region, UncertifiedPointsSayWhyAndFallBack) {
  const Index n = 12, c = 2;
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(n * c, 14, 55), c);
  sgdstab::SolverOptions o = with_region_method(Method::lanczos, 4);
  o.max_iterations = 1;
  o.dense_fallback_max_dimension = 0;
  const auto stuck = sgdstab::stability_region(g, {Sampling::with_replacement}, {1, 2}, o);
  EXPECT_FALSE(stuck.converged());
  EXPECT_EQ(stuck.status(), sgdstab::Status::not_converged);
  EXPECT_NE(stuck.report.message.find("not certified"), std::string::npos) << stuck.report.message;
  EXPECT_NE(stuck.report.message.find("dense fallback is too large"), std::string::npos) << stuck.report.message;
  const auto& p = stuck.curves[0].points[0];
  EXPECT_LT(p.eta_low, p.eta_high);  // the interval is still valid and says how uncertain
  const double exact = sgdstab::stability_threshold(g, 1, Sampling::with_replacement, with_region_method(Method::dense)).eta_star;
  EXPECT_LE(p.eta_low, exact * (1 + 1e-12));
  EXPECT_GE(p.eta_high, exact * (1 - 1e-12));
  o.dense_fallback_max_dimension = 8000;
  const auto rescued = sgdstab::stability_region(g, {Sampling::with_replacement}, {1, 2}, o);
  ASSERT_TRUE(rescued.converged()) << rescued.report.message;
  EXPECT_EQ(rescued.curves[0].points[0].report.method, Method::dense);
  EXPECT_NE(rescued.curves[0].points[0].report.message.find("fell back to the dense method"), std::string::npos);
  EXPECT_REL_NEAR(rescued.curves[0].points[0].eta_star, exact, 1e-10);
}

// lambda_max((1 - s) diag(p) + s R) of every member against LAPACK, with its certificate.
namespace {
void expect_family_matches_lapack(const sgdstab::detail::FamilyResult& res, const MatrixXd& r, const VectorXd& p,
                                  const std::vector<double>& s) {
  ASSERT_EQ(res.members.size(), s.size());
  for (std::size_t j = 0; j < s.size(); ++j) {
    MatrixXd a = s[j] * r;
    a.diagonal() += (1.0 - s[j]) * p;
    ref::SymEigenSolver es(a);
    const double exact = es.eigenvalues().maxCoeff();
    const auto& mem = res.members[j];
    SCOPED_TRACE("s = " + std::to_string(s[j]));
    ASSERT_TRUE(mem.converged()) << mem.message;
    EXPECT_REL_NEAR(mem.value, exact, 1e-10);
    EXPECT_LE(mem.value, exact * (1 + 1e-13));
    EXPECT_GE(mem.value + mem.error, exact * (1 - 1e-13));
  }
}
}  // namespace

// The family solver alone: lambda_max((1 - s) diag(p) + s R) for an explicit R
// against LAPACK, with a subspace far smaller than the dimension.
TEST(Region, FamilySolverMatchesLapackOnAnExplicitFamily) {
  const Index m = 300;
  const MatrixXd x = ref::gaussian(m, m / 2, 56);
  const MatrixXd r = x * x.transpose() / static_cast<double>(m);
  VectorXd p = ref::gaussian(m, 1, 57).cwiseAbs();
  const sgdstab::detail::ApplyFn apply = [&](const double* in, double* out) {
    VectorXd::Map(out, m) = r * VectorXd::Map(in, m);
  };
  const std::vector<double> s = {1.0, 0.5, 0.9, 0.1, 0.01};
  const auto res = sgdstab::detail::family_top(p, apply, s, VectorXd::Ones(m), with_region_method(Method::lanczos, 12),
                                               0.0, "test family");
  expect_family_matches_lapack(res, r, p, s);
  for (std::size_t j = 0; j < s.size(); ++j) {
    // the tangent is a Rayleigh quotient: below g everywhere, equal at s
    const auto& mem = res.members[j];
    EXPECT_REL_NEAR((1 - s[j]) * mem.tangent_p + s[j] * mem.tangent_r, mem.value, 1e-10);
  }
  EXPECT_LT(res.matvecs, 5 * 60);  // sharing: fewer than one full solve per member would need
}

}  // namespace

// Mixed precision (theory/region.md, section 7): single-precision images
// first, every certificate from double ones. The cheap operator here is R
// rounded to float, and a far worse one (R with 1e-3 relative noise): the
// certified values must match LAPACK to 1e-10 either way.

TEST(Region, MixedPrecisionFamilyIsCertifiedInDouble) {
  const Index m = 300;
  const MatrixXd x = ref::gaussian(m, m / 2, 58);
  const MatrixXd r = x * x.transpose() / static_cast<double>(m);
  const VectorXd p = ref::gaussian(m, 1, 59).cwiseAbs();
  const Eigen::MatrixXf rf = r.cast<float>();
  const sgdstab::detail::ApplyFn apply = [&](const double* in, double* out) {
    VectorXd::Map(out, m) = r * VectorXd::Map(in, m);
  };
  const sgdstab::detail::LowApplyFn single = [&](const float* in, float* out) {
    Eigen::VectorXf::Map(out, m) = rf * Eigen::VectorXf::Map(in, m);
  };
  const VectorXd noise = VectorXd::Ones(m) + 1e-3 * ref::gaussian(m, 1, 60);
  const sgdstab::detail::LowApplyFn noisy = [&](const float* in, float* out) {
    Eigen::VectorXf::Map(out, m) = (r * Eigen::VectorXf::Map(in, m).cast<double>()).cwiseProduct(noise).cast<float>();
  };
  for (const std::vector<double>& s : std::vector<std::vector<double>>{{1.0}, {0.3}, {1.0, 0.5, 0.9, 0.1}}) {
    for (const auto* low : {&single, &noisy}) {
      SCOPED_TRACE(std::string(low == &single ? "float R" : "noisy R") + ", " + std::to_string(s.size()) + " members");
      const auto res = sgdstab::detail::family_top(p, apply, s, VectorXd::Ones(m), with_region_method(Method::lanczos, 12),
                                                   0.0, "test family", false, *low);
      expect_family_matches_lapack(res, r, p, s);
      if (low == &single && s.size() == 1) {
        // The single-precision phase does the work: it converges about as
        // fast as double alone, and a float-rounded R leaves the double
        // phase only the carried Ritz vectors' images and a step or two.
        const auto plain = sgdstab::detail::family_top(p, apply, s, VectorXd::Ones(m),
                                                       with_region_method(Method::lanczos, 12), 0.0, "test family");
        EXPECT_LE(res.low_precision_matvecs, plain.matvecs + 4);
        EXPECT_LE(res.matvecs - res.low_precision_matvecs, 4);
      }
      EXPECT_GT(res.low_precision_matvecs, 0);
      EXPECT_LT(res.low_precision_matvecs, res.matvecs);  // the double ones certify
      if (low == &single && s.size() > 1) {
        // Every member runs its single-precision phase in the shared float
        // subspace; the double subspace starts from the span of their top two
        // Ritz vectors, so double applications are the promoted directions
        // and a step or two (measured: 12 for these 4 members; the solver
        // that ran only the first member in single precision made 39).
        EXPECT_LE(res.matvecs - res.low_precision_matvecs, 4 * static_cast<Index>(s.size()));
      }
    }
  }
}

// Many members in a small subspace (as a tight memory limit leaves it) with
// the single-precision phase: below 8 vectors it does not run for several
// members (double only); from 8 the promoted directions stay within the
// double subspace's capacity (at most K / 2 of them). Every member is
// certified against LAPACK either way. (With one promoted direction per
// member and K = 3 the certificates were wrong: the second Ritz value, which
// judges the gap, came from another member's vector.)
TEST(Region, MixedPrecisionManyMembersInASmallSubspace) {
  const Index m = 120;
  const MatrixXd x = ref::gaussian(m, m / 2, 71);
  const MatrixXd r = x * x.transpose() / static_cast<double>(m);
  const VectorXd p = ref::gaussian(m, 1, 72).cwiseAbs();
  const Eigen::MatrixXf rf = r.cast<float>();
  const sgdstab::detail::ApplyFn apply = [&](const double* in, double* out) {
    VectorXd::Map(out, m) = r * VectorXd::Map(in, m);
  };
  const sgdstab::detail::LowApplyFn single = [&](const float* in, float* out) {
    Eigen::VectorXf::Map(out, m) = rf * Eigen::VectorXf::Map(in, m);
  };
  const std::vector<double> s = {1.0, 0.8, 0.6, 0.45, 0.3, 0.2, 0.1, 0.05, 0.02};
  for (Index k : {3, 4, 6, 7, 8, 9, 12}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    const auto res = sgdstab::detail::family_top(p, apply, s, VectorXd::Ones(m), with_region_method(Method::lanczos, k), 0.0,
                                                 "test family", false, single);
    EXPECT_EQ(res.subspace_dimension, k);
    expect_family_matches_lapack(res, r, p, s);
    if (k < 8) EXPECT_EQ(res.low_precision_matvecs, 0);
    else EXPECT_GT(res.low_precision_matvecs, 0);
  }
}

// A Krylov space that becomes invariant after a few steps (R of rank 3, no
// diagonal) with the single-precision phase on: certified from double images.
TEST(Region, MixedPrecisionInvariantSubspaceIsCertifiedInDouble) {
  const Index m = 50;
  const MatrixXd x = ref::gaussian(m, 3, 66);
  const MatrixXd r = x * x.transpose();
  const VectorXd p = VectorXd::Zero(m);
  const Eigen::MatrixXf rf = r.cast<float>();
  const sgdstab::detail::ApplyFn apply = [&](const double* in, double* out) {
    VectorXd::Map(out, m) = r * VectorXd::Map(in, m);
  };
  const sgdstab::detail::LowApplyFn single = [&](const float* in, float* out) {
    Eigen::VectorXf::Map(out, m) = rf * Eigen::VectorXf::Map(in, m);
  };
  const std::vector<double> s = {1.0};
  const auto res = sgdstab::detail::family_top(p, apply, s, VectorXd::Ones(m), with_region_method(Method::lanczos, 12), 0.0,
                                               "test family", false, single);
  expect_family_matches_lapack(res, r, p, s);
  EXPECT_GT(res.low_precision_matvecs, 0);
  EXPECT_LT(res.low_precision_matvecs, res.matvecs);
}

// The single-precision R of a geometry against the double one.
TEST(Region, SinglePrecisionOperatorMatchesTheDoubleOne) {
  for (Index c : {1, 2, 3}) {
    const MatrixXd J = ref::gaussian(12 * c, 10 + 4 * c, 61 + static_cast<std::uint64_t>(c));
    const auto g = sgdstab::Geometry::from_jacobian(J, c);
    const sgdstab::SecondMomentOperator d(g, 1, Sampling::with_replacement);
    const sgdstab::PencilOperator op(d);
    const auto low = sgdstab::detail::low_precision_pencil_r(g);
    const VectorXd x = ref::gaussian(op.rows(), 1, 64);
    VectorXd y(op.rows());
    Eigen::VectorXf yl(op.rows());
    const Eigen::VectorXf xf = x.cast<float>();
    op.perform_op(x.data(), y.data());
    low(xf.data(), yl.data());
    low(xf.data(), yl.data());  // scratch reused
    SCOPED_TRACE("c = " + std::to_string(c));
    EXPECT_LE((yl.cast<double>() - y).norm(), 1e-5 * y.norm());
  }
}

// Through the public API at a size where it is forced on (it starts at
// r >= 512 by default): every point of the region and a single threshold
// against the dense method, with and without the mixed start.
TEST(Region, MixedPrecisionRegionMatchesTheDenseMethod) {
  const Index n = 12, c = 2;
  const MatrixXd J = ref::gaussian(n * c, 18, 65);
  const auto g = sgdstab::Geometry::from_jacobian(J, c);
  const std::vector<Index> batches = {1, 2, 3, 5, 12};
  const auto dense = sgdstab::stability_region(g, kRegionSchemes, batches, with_region_method(Method::dense));
  ASSERT_TRUE(dense.converged()) << dense.report.message;
  for (bool mixed : {true, false}) {
    sgdstab::SolverOptions o = with_region_method(Method::lanczos);
    o.mixed_precision = mixed;
    o.mixed_precision_min_rank = 1;
    o.device = sgdstab::Device::cpu;
    const auto region = sgdstab::stability_region(g, kRegionSchemes, batches, o);
    ASSERT_TRUE(region.converged()) << region.report.message;
    if (mixed) EXPECT_GT(region.report.single_precision_matvecs, 0);
    else EXPECT_EQ(region.report.single_precision_matvecs, 0);
    for (std::size_t k = 0; k < kRegionSchemes.size(); ++k)
      for (std::size_t b = 0; b < batches.size(); ++b)
        EXPECT_REL_NEAR(region.curves[k].points[b].eta_star, dense.curves[k].points[b].eta_star, 1e-9)
            << "mixed " << mixed << " scheme " << k << " B = " << batches[b];
    const auto one = sgdstab::stability_threshold(g, 3, Sampling::bernoulli, o);
    ASSERT_TRUE(one.report.converged()) << one.report.message;
    EXPECT_EQ(one.report.single_precision_matvecs > 0, mixed);
    EXPECT_REL_NEAR(one.eta_star, dense.curves[2].points[2].eta_star, 1e-9);
  }
}

// exact_region_min_bytes is what the solver checks before it allocates: with
// the memory limit at the footprint the region runs, 1 % below it the region
// refuses (resource_error) before computing anything. The mixed start's
// share is the single-precision factor and its scratch, 4 (3 nC r + 3 r^2)
// bytes; the dense path's the m x m matrix.
TEST(Region, MinimumFootprintIsWhatTheSolverChecks) {
  const Index n = 12, c = 2;
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(n * c, 30, 141), c);
  const Index r = g.rank(), m = r * (r + 1) / 2;
  ASSERT_EQ(r, 24);
  const std::vector<Sampling> schemes = {Sampling::without_replacement, Sampling::with_replacement};
  const std::vector<Index> batches = {1, 3, 12};
  const auto runs_at = [&](sgdstab::SolverOptions o, double limit) {
    o.memory_limit_bytes = limit;
    return sgdstab::stability_region(g, schemes, batches, o);
  };
  sgdstab::SolverOptions lanczos;
  lanczos.device = sgdstab::Device::cpu;  // automatic may resolve to a GPU (no mixed start there)
  lanczos.method = Method::lanczos;
  lanczos.mixed_precision = false;
  sgdstab::SolverOptions mixed = lanczos;
  mixed.mixed_precision = true;
  mixed.mixed_precision_min_rank = 1;
  sgdstab::SolverOptions dense;
  dense.device = sgdstab::Device::cpu;
  dense.method = Method::dense;
  const double b_lanczos = sgdstab::exact_region_min_bytes(g, lanczos);
  const double b_mixed = sgdstab::exact_region_min_bytes(g, mixed);
  const double b_dense = sgdstab::exact_region_min_bytes(g, dense);
  const double nc = static_cast<double>(n * c), rr = static_cast<double>(r);
  // The sizes overload (before a geometry exists) is the same number.
  EXPECT_EQ(sgdstab::exact_region_min_bytes(n * c, r, mixed), b_mixed);
  EXPECT_THROW(sgdstab::exact_region_min_bytes(4, 5, mixed), sgdstab::invalid_argument);
  EXPECT_DOUBLE_EQ(b_mixed - b_lanczos, 4.0 * (3.0 * nc * rr + 3.0 * rr * rr));
  EXPECT_GE(b_lanczos, 8.0 * 19.0 * static_cast<double>(m));
  EXPECT_GE(b_dense - b_lanczos, 8.0 * static_cast<double>(m) * static_cast<double>(m) - 8.0 * 19.0 * m);
  for (const auto& [o, b] : {std::pair{lanczos, b_lanczos}, std::pair{mixed, b_mixed}, std::pair{dense, b_dense}}) {
    SCOPED_TRACE("footprint " + std::to_string(b));
    EXPECT_THROW(runs_at(o, 0.99 * b), sgdstab::resource_error);
    const auto reg = runs_at(o, b);
    ASSERT_EQ(reg.curves.size(), 2u);
    // The points it certified (at least one per curve) are the region's without a limit.
    const auto free = sgdstab::stability_region(g, schemes, batches, o);
    for (std::size_t k = 0; k < 2; ++k) {
      Index certified = 0;
      for (std::size_t j = 0; j < batches.size(); ++j)
        if (reg.curves[k].points[j].converged()) {
          ++certified;
          EXPECT_NEAR(reg.curves[k].points[j].eta_star, free.curves[k].points[j].eta_star,
                      1e-8 * free.curves[k].points[j].eta_star);
        }
      EXPECT_GE(certified, 1);
    }
  }
}
