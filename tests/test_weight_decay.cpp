// SGD with L2 weight decay (theory/weight_decay.md) against the explicit
// second-moment map E[A_B (x) A_B], A_B = (1 - eta lambda) I - eta H_B, over
// every batch in the whole parameter space (exhaustive enumeration, range(H)
// and its complement alike), with eta* found by bisection on its spectral
// radius; plus the closed form at GD and the input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "reference.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/moment_operator.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/weight_decay.hpp"

using Eigen::MatrixXd;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;

// E[kron(A_B, A_B)] over every batch: vec(E[A S A]) = K vec(S).
MatrixXd wd_explicit_t(const std::vector<std::pair<MatrixXd, double>>& batches, double eta, double lambda) {
  const Eigen::Index p = batches.front().first.rows();
  MatrixXd k = MatrixXd::Zero(p * p, p * p);
  for (const auto& [hb, prob] : batches) {
    const MatrixXd a = (1.0 - eta * lambda) * MatrixXd::Identity(p, p) - eta * hb;
    for (Eigen::Index i = 0; i < p; ++i)
      for (Eigen::Index j = 0; j < p; ++j) k.block(j * p, i * p, p, p) += prob * a(j, i) * a;
  }
  return k;
}

// rho of K on symmetric p x p matrices (all of them, or those on range(H)).
double wd_explicit_rho(const MatrixXd& k, const MatrixXd& basis) {
  const ref::SymEigenSolver es(basis.transpose() * k * basis, false);
  return es.eigenvalues().cwiseAbs().maxCoeff();
}

// eta* by bisection on rho(eta) = 1 in the whole parameter space.
double wd_bisect_eta_star(const std::vector<std::pair<MatrixXd, double>>& batches, double lambda, double hi) {
  const Eigen::Index p = batches.front().first.rows();
  const MatrixXd all = ref::sym_range_basis(MatrixXd::Identity(p, p));
  double lo = 0.0;
  EXPECT_GT(wd_explicit_rho(wd_explicit_t(batches, hi, lambda), all), 1.0) << "bisection bracket";
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    (wd_explicit_rho(wd_explicit_t(batches, mid, lambda), all) <= 1.0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

struct WdCase {
  Eigen::Index n, c, p;
};
// {3, 1, 5}: rank 3 < p, so the complement of range(H) is in the reference too.
const WdCase kWdCases[] = {{4, 1, 3}, {3, 2, 4}, {3, 1, 5}, {2, 3, 4}};

}  // namespace

TEST(WeightDecay, ThresholdMatchesEnumeratedSecondMomentMap) {
  int seed = 0;
  for (const WdCase& cs : kWdCases) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 70 + seed++);
    const auto g = sgdstab::Geometry::from_jacobian(J, cs.c);
    const auto h = ref::per_sample(J, cs.c);
    for (Sampling s : kSchemes)
      for (Eigen::Index B : {Eigen::Index{1}, Eigen::Index{2}, cs.n}) {
        for (double rel : {0.05, 0.7}) {
          const double lambda = rel * g.lambda_max();
          const double expected = wd_bisect_eta_star(ref::batch_hessians(h, B, s), lambda, 2.0 / lambda);
          for (sgdstab::Method m : {sgdstab::Method::dense, sgdstab::Method::lanczos}) {
            sgdstab::SolverOptions o;
            o.method = m;
            const auto r = sgdstab::weight_decay_threshold(g, B, s, lambda, o);
            ASSERT_TRUE(r.converged()) << r.report.message;
            EXPECT_REL_NEAR(r.eta_star, expected, 1e-8)
                << " scheme " << sgdstab::to_string(s) << " B " << B << " lambda " << lambda << " n " << cs.n;
          }
        }
      }
  }
}

TEST(WeightDecay, GradientDescentClosedFormAndZeroIsPlainSgd) {
  const MatrixXd J = ref::gaussian(12, 9, 81);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  for (double lambda : {0.0, 1e-3, 0.3, 5.0}) {
    const auto r = sgdstab::weight_decay_threshold(g, 6, Sampling::without_replacement, lambda);
    EXPECT_REL_NEAR(r.eta_star, 2.0 / (g.lambda_max() + lambda), 1e-13);
  }
  for (Sampling s : kSchemes)
    for (Eigen::Index B : {1, 2, 5}) {
      const auto plain = sgdstab::stability_threshold(g, B, s);
      const auto zero = sgdstab::weight_decay_threshold(g, B, s, 0.0);
      EXPECT_REL_NEAR(zero.eta_star, plain.eta_star, 1e-9);
    }
}

TEST(WeightDecay, CurveEqualsItsPoints) {
  const MatrixXd J = ref::gaussian(20, 8, 82);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);  // n = 10
  const std::vector<Eigen::Index> batches = {1, 3, 7, 10};
  for (Sampling s : kSchemes) {
    const double lambda = 0.2 * g.lambda_max();
    const auto curve = sgdstab::weight_decay_threshold_curve(g, batches, s, lambda);
    ASSERT_EQ(curve.size(), batches.size());
    double previous = 0.0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      EXPECT_EQ(curve[i].batch, batches[i]);
      ASSERT_TRUE(curve[i].converged()) << curve[i].report.message;
      const auto one = sgdstab::weight_decay_threshold(g, batches[i], s, lambda);
      EXPECT_REL_NEAR(curve[i].eta_star, one.eta_star, 1e-9);
      EXPECT_GE(curve[i].eta_star, previous * (1.0 - 1e-12));  // non-decreasing in B
      previous = curve[i].eta_star;
    }
  }
}

TEST(WeightDecay, OrthogonalSamplesClosedFormCanRaiseOrLowerTheThreshold) {
  // n samples with orthogonal gradients, sample i's curvature s_i along e_i (C = 1,
  // p = n), B = 1 with replacement: the diagonal entry X_ii of the second
  // moment evolves by (1 - 1/n)(1 - eta lambda)^2 + (1/n)(1 - eta (lambda + s_i))^2,
  // so eta* = min_i 2 (lambda + s_i / n) / ((1 - 1/n) lambda^2 + (lambda + s_i)^2 / n).
  const Eigen::Index n = 5;
  const Eigen::VectorXd curv = (Eigen::VectorXd(n) << 3.0, 2.0, 1.5, 1.0, 0.5).finished();
  const auto g = sgdstab::Geometry::from_jacobian(MatrixXd(curv.cwiseSqrt().asDiagonal()), 1);
  const double nn = static_cast<double>(n);
  const double plain = sgdstab::stability_threshold(g, 1, Sampling::with_replacement).eta_star;
  EXPECT_REL_NEAR(plain, 2.0 / curv.maxCoeff(), 1e-12);
  for (double lambda : {0.01, 0.2, 1.0}) {
    double expected = std::numeric_limits<double>::infinity();
    for (Eigen::Index i = 0; i < n; ++i)
      expected = std::min(expected, 2.0 * (lambda + curv(i) / nn) /
                                        ((1.0 - 1.0 / nn) * lambda * lambda + (lambda + curv(i)) * (lambda + curv(i)) / nn));
    const auto r = sgdstab::weight_decay_threshold(g, 1, Sampling::with_replacement, lambda);
    EXPECT_REL_NEAR(r.eta_star, expected, 1e-10) << " lambda " << lambda;
    EXPECT_GT(r.eta_star, plain);  // here weight decay raises eta* (the other steps let X_ii decay) ...
  }
  // ... while at GD it lowers it: 2 / (lambda_max + lambda).
  EXPECT_LT(sgdstab::weight_decay_threshold(g, n, Sampling::without_replacement, 0.2).eta_star,
            sgdstab::stability_threshold(g, n, Sampling::without_replacement).eta_star);
}

TEST(WeightDecay, RadiusMatchesEnumerationAndCrossesOneAtTheThreshold) {
  const WdCase cs{3, 2, 4};  // full rank: range(H) is all of R^p
  const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 83);
  const auto g = sgdstab::Geometry::from_jacobian(J, cs.c);
  const auto h = ref::per_sample(J, cs.c);
  const MatrixXd all = ref::sym_range_basis(MatrixXd::Identity(cs.p, cs.p));
  for (Sampling s : kSchemes) {
    const double lambda = 0.4 * g.lambda_max();
    const auto batches = ref::batch_hessians(h, 2, s);
    const double eta_star = sgdstab::weight_decay_threshold(g, 2, s, lambda).eta_star;
    for (double f : {0.3, 0.999, 1.001, 1.5}) {  // 1.5 eta* lambda > 1: A_B's shift is negative there
      const double eta = f * eta_star;
      const auto r = sgdstab::weight_decay_spectral_radius(g, eta, 2, s, lambda);
      ASSERT_TRUE(r.converged()) << r.report.message;
      EXPECT_REL_NEAR(r.rho, wd_explicit_rho(wd_explicit_t(batches, eta, lambda), all), 1e-9) << " f " << f;
      EXPECT_EQ(r.rho < 1.0, f < 1.0) << " f " << f << " rho " << r.rho;
    }
  }
}

TEST(WeightDecay, ScalesWithTheJacobian) {
  // J -> kappa J: H -> kappa^2 H, so eta*(kappa J, kappa^2 lambda) = eta*(J, lambda) / kappa^2,
  // also where the geometry is rescaled internally (theory/scaling.md).
  const MatrixXd J = ref::gaussian(10, 6, 84);
  const auto g = sgdstab::Geometry::from_jacobian(J, 1);
  const double lambda = 0.3 * g.lambda_max();
  for (double kappa : {1e-90, 1e60}) {
    const auto gk = sgdstab::Geometry::from_jacobian(kappa * J, 1);
    for (Sampling s : kSchemes) {
      const double base = sgdstab::weight_decay_threshold(g, 3, s, lambda).eta_star;
      const auto r = sgdstab::weight_decay_threshold(gk, 3, s, kappa * kappa * lambda);
      EXPECT_REL_NEAR(r.eta_star * kappa * kappa, base, 1e-9);
      const auto rho = sgdstab::weight_decay_spectral_radius(gk, 0.8 * r.eta_star, 3, s, kappa * kappa * lambda);
      EXPECT_REL_NEAR(rho.rho, sgdstab::weight_decay_spectral_radius(g, 0.8 * base, 3, s, lambda).rho, 1e-9);
    }
    // The region's rescaled branch: points, eta_gd and weight_decay in the user's units.
    const std::vector<Sampling> schemes = {Sampling::without_replacement, Sampling::with_replacement};
    const auto region = sgdstab::weight_decay_region(gk, schemes, {1, 3, 10}, kappa * kappa * lambda);
    EXPECT_EQ(region.weight_decay, kappa * kappa * lambda);
    EXPECT_REL_NEAR(region.eta_gd * kappa * kappa, 2.0 / (g.lambda_max() + lambda), 1e-9);
    for (std::size_t k = 0; k < schemes.size(); ++k) {
      const double base = sgdstab::weight_decay_threshold(g, 3, schemes[k], lambda).eta_star;
      EXPECT_REL_NEAR(region.curves[k].points[1].eta_star * kappa * kappa, base, 1e-9);
      const auto iv = region.band(schemes[k], 3.0);
      EXPECT_LE(iv.low * kappa * kappa, base * (1 + 1e-9));
      EXPECT_GE(iv.high * kappa * kappa, base * (1 - 1e-9));
    }
  }
}

TEST(WeightDecay, BadInputIsNamed) {
  const auto g = sgdstab::Geometry::from_jacobian(ref::gaussian(6, 4, 85), 1);
  for (double bad : {-1e-3, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    try {
      sgdstab::weight_decay_threshold(g, 2, Sampling::with_replacement, bad);
      ADD_FAILURE() << "accepted weight decay " << bad;
    } catch (const sgdstab::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("weight decay"), std::string::npos) << e.what();
    }
    EXPECT_THROW(sgdstab::weight_decay_spectral_radius(g, 0.1, 2, Sampling::with_replacement, bad),
                 sgdstab::invalid_argument);
    EXPECT_THROW(sgdstab::weight_decay_threshold_curve(g, {1, 2}, Sampling::with_replacement, bad),
                 sgdstab::invalid_argument);
  }
  EXPECT_THROW(sgdstab::weight_decay_threshold(g, 0, Sampling::with_replacement, 0.1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::weight_decay_threshold(g, 7, Sampling::with_replacement, 0.1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::weight_decay_spectral_radius(g, -0.1, 2, Sampling::with_replacement, 0.1),
               sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::weight_decay_threshold_curve(g, {}, Sampling::with_replacement, 0.1), sgdstab::invalid_argument);
}

TEST(WeightDecay, SinglePrecisionPhaseAndDirection) {
  // r = 30 (465 packed coordinates): the Lanczos path with its single-precision
  // phase forced on, against the dense pencil; the direction solves the pencil.
  const MatrixXd J = ref::gaussian(40, 30, 86);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const double lambda = 0.1 * g.lambda_max();
  for (Sampling s : kSchemes) {
    sgdstab::SolverOptions dense, mixed;
    dense.method = sgdstab::Method::dense;
    mixed.method = sgdstab::Method::lanczos;
    mixed.mixed_precision = true;
    mixed.mixed_precision_min_rank = 1;
    mixed.want_direction = true;
    const auto a = sgdstab::weight_decay_threshold(g, 4, s, lambda, dense);
    const auto b = sgdstab::weight_decay_threshold(g, 4, s, lambda, mixed);
    ASSERT_TRUE(a.converged() && b.converged()) << a.report.message << " / " << b.report.message;
    EXPECT_GT(b.report.single_precision_matvecs, 0) << "the single-precision phase did not run";
    EXPECT_REL_NEAR(b.eta_star, a.eta_star, 1e-9) << sgdstab::to_string(s);
    const MatrixXd& S = b.direction;
    ASSERT_EQ(S.rows(), g.rank());
    EXPECT_GE(ref::SymEigenSolver(S, false).eigenvalues()(0), -1e-6);  // PSD (Perron)
    const sgdstab::SecondMomentOperator op(g, 4, s);
    const MatrixXd lhs = op.quadratic(S) + lambda * op.anticommutator(S) + lambda * lambda * S;
    const MatrixXd rhs = b.pencil_max * (op.anticommutator(S) + 2.0 * lambda * S);
    // The eigenvalue is certified to 1e-10; the vector to about its square root
    // (plain SGD's direction has the same ~2e-6 relative residual here).
    EXPECT_LE((lhs - rhs).norm(), 1e-4 * rhs.norm()) << sgdstab::to_string(s);
  }
}

TEST(WeightDecay, MonteCarloOfTheLinearizedStepsMatchesTheEnumeratedMap) {
  // delta_0 ~ N(0, I/r) and full rank (range(H) = R^p), so
  // E|delta_t|^2 = tr(T^t(I/r)) in any orthonormal coordinates, T from the
  // enumeration. Below eta* only, as in test_montecarlo.cpp, and for few
  // steps: above eta* (and after many steps below it, the more so the larger
  // lambda) the moment is carried by rare batch sequences that 40 000
  // trajectories miss (max_share near 1), and the intervals mean nothing.
  const WdCase cs{4, 2, 3};
  const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 87);
  const auto g = sgdstab::Geometry::from_jacobian(J, cs.c);
  ASSERT_EQ(g.rank(), cs.p);
  const auto h = ref::per_sample(J, cs.c);
  const double lambda = 0.2 * g.lambda_max();
  const Eigen::Index steps = 4;
  auto exact_norms = [&](const std::vector<std::pair<MatrixXd, double>>& batches, double eta, double lam) {
    const MatrixXd k = wd_explicit_t(batches, eta, lam);
    Eigen::VectorXd v = Eigen::VectorXd::Zero(cs.p * cs.p);  // vec(I / r)
    for (Eigen::Index i = 0; i < cs.p; ++i) v(i * cs.p + i) = 1.0 / static_cast<double>(cs.p);
    std::vector<double> out;
    for (Eigen::Index t = 0; t <= steps; ++t) {
      out.push_back(Eigen::Map<const MatrixXd>(v.data(), cs.p, cs.p).trace());
      v = k * v;
    }
    return out;
  };
  for (Sampling s : kSchemes) {
    const auto batches = ref::batch_hessians(h, 2, s);
    const double eta_star = sgdstab::weight_decay_threshold(g, 2, s, lambda).eta_star;
    sgdstab::SimulationOptions o;
    o.batch = 2;
    o.lr = 0.7 * eta_star;
    o.weight_decay = lambda;
    o.schedule = sgdstab::to_schedule(s);
    o.steps = steps;
    o.trajectories = 40000;
    o.confidence = 1.0 - 1e-4;
    o.seed = 9;
    const auto sim = sgdstab::simulate_linearized(g, o);
    const std::vector<double> expected = exact_norms(batches, o.lr, lambda);
    const std::vector<double> plain = exact_norms(batches, o.lr, 0.0);
    ASSERT_EQ(sim.squared_norm.size(), expected.size());
    for (std::size_t t = 0; t < expected.size(); ++t) {
      const auto& e = sim.squared_norm[t];
      EXPECT_LE(e.ci_low, expected[t]) << sgdstab::to_string(s) << " t " << t;
      EXPECT_GE(e.ci_high, expected[t]) << sgdstab::to_string(s) << " t " << t;
    }
    // The check has power: without the decay the moment would lie elsewhere.
    const auto& last = sim.squared_norm.back();
    EXPECT_LT(last.max_share, 0.02) << "heavy tail: the interval is not to be trusted";
    EXPECT_TRUE(plain.back() < last.ci_low || plain.back() > last.ci_high)
        << sgdstab::to_string(s) << " plain " << plain.back() << " CI [" << last.ci_low << ", " << last.ci_high << "]";
    // Below eta* the exact moment decays, above it grows.
    EXPECT_LT(expected.back(), expected.front());
    EXPECT_GT(exact_norms(batches, 1.15 * eta_star, lambda).back(), expected.front());
  }
  sgdstab::SimulationOptions bad;
  bad.lr = 0.1;
  bad.batch = 2;
  bad.weight_decay = -1.0;
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
  bad.weight_decay = std::numeric_limits<double>::quiet_NaN();
  bad.momentum.beta = 0.5;  // with momentum too (theory/momentum.md, section 8)
  EXPECT_THROW(sgdstab::simulate_linearized(g, bad), sgdstab::invalid_argument);
}

TEST(WeightDecay, RegionPointsBandsAndErrors) {
  const MatrixXd J = ref::gaussian(24, 10, 88);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);  // n = 12
  const double lambda = 0.15 * g.lambda_max();
  const std::vector<Sampling> schemes = {Sampling::without_replacement, Sampling::with_replacement};
  const std::vector<Eigen::Index> batches = {1, 2, 5, 12};
  for (sgdstab::Method m : {sgdstab::Method::dense, sgdstab::Method::lanczos}) {
    sgdstab::SolverOptions o;
    o.method = m;
    const auto region = sgdstab::weight_decay_region(g, schemes, batches, lambda, o);
    ASSERT_TRUE(region.converged()) << region.report.message;
    EXPECT_EQ(region.weight_decay, lambda);
    EXPECT_REL_NEAR(region.eta_gd, 2.0 / (g.lambda_max() + lambda), 1e-13);
    sgdstab::SolverOptions dense;
    dense.method = sgdstab::Method::dense;
    for (const auto& curve : region.curves) {
      ASSERT_EQ(curve.points.size(), batches.size());
      for (const auto& p : curve.points) {
        const double exact = sgdstab::weight_decay_threshold(g, p.batch, curve.sampling, lambda, dense).eta_star;
        EXPECT_LE(p.eta_low, exact * (1 + 1e-12));
        EXPECT_GE(p.eta_high, exact * (1 - 1e-12));
        EXPECT_REL_NEAR(p.eta_star, exact, 1e-8);
      }
      // band() between computed batch sizes contains the threshold there.
      for (Eigen::Index b : {3, 7, 10}) {
        const double exact = sgdstab::weight_decay_threshold(g, b, curve.sampling, lambda, dense).eta_star;
        const auto iv = region.band(curve.sampling, static_cast<double>(b));
        EXPECT_LE(iv.low, exact * (1 + 1e-12)) << " B " << b;
        EXPECT_GE(iv.high, exact * (1 - 1e-12)) << " B " << b;
      }
    }
  }
  // lambda = 0 is the plain region; Bernoulli with lambda > 0 is refused by name.
  const auto plain = sgdstab::stability_region(g, schemes, batches);
  const auto zero = sgdstab::weight_decay_region(g, schemes, batches, 0.0);
  for (std::size_t k = 0; k < schemes.size(); ++k)
    for (std::size_t i = 0; i < batches.size(); ++i)
      EXPECT_REL_NEAR(zero.curves[k].points[i].eta_star, plain.curves[k].points[i].eta_star, 1e-9);
  try {
    sgdstab::weight_decay_region(g, {Sampling::bernoulli}, batches, lambda);
    ADD_FAILURE() << "Bernoulli accepted";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Bernoulli"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sgdstab::weight_decay_region(g, schemes, batches, -1.0), sgdstab::invalid_argument);
  // band() of a region with weight decay: the c = 1 family, so not Bernoulli's.
  EXPECT_THROW(sgdstab::weight_decay_region(g, schemes, batches, lambda).band(Sampling::bernoulli, 3.0),
               sgdstab::invalid_argument);
}

TEST(WeightDecay, SampledRadiusAndCrossCheckAgreeWithTheExactAnswer) {
  // The sampled operator (1/K) sum_k A_k (x) A_k, A_k = (1 - lr lambda) I - lr H_{b_k}, with
  // empty Bernoulli batches (B = 1 of n = 6: probability (5/6)^6 each), against the enumerated map.
  const WdCase cs{6, 1, 4};
  const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 89);
  const auto g = sgdstab::Geometry::from_jacobian(J, cs.c);
  ASSERT_EQ(g.rank(), cs.p);
  const auto h = ref::per_sample(J, cs.c);
  const MatrixXd all = ref::sym_range_basis(MatrixXd::Identity(cs.p, cs.p));
  const double lambda = 0.3 * g.lambda_max();
  for (Sampling s : kSchemes)
    for (Eigen::Index B : {1, 2}) {
      const double eta_star = sgdstab::weight_decay_threshold(g, B, s, lambda).eta_star;
      for (double f : {0.8, 1.2}) {
        sgdstab::RadiusEstimateOptions o;
        o.lr = f * eta_star;
        o.batch = B;
        o.schedule = sgdstab::to_schedule(s);
        o.weight_decay = lambda;
        o.blocks = 20000;
        o.seed = 3;
        const auto est = sgdstab::estimate_radius(g, o);
        ASSERT_TRUE(est.converged()) << est.report.message;
        const double rho = wd_explicit_rho(wd_explicit_t(ref::batch_hessians(h, B, s), o.lr, lambda), all);
        EXPECT_LE(est.ci_low, rho) << sgdstab::to_string(s) << " B " << B << " f " << f;
        EXPECT_GE(est.ci_high, rho) << sgdstab::to_string(s) << " B " << B << " f " << f;
        EXPECT_LT(est.ci_high - est.ci_low, 0.1 * rho);  // informative
        // Without the decay the sampled radius would be elsewhere (the check has power).
        const double plain = wd_explicit_rho(wd_explicit_t(ref::batch_hessians(h, B, s), o.lr, 0.0), all);
        EXPECT_TRUE(plain < est.ci_low || plain > est.ci_high) << sgdstab::to_string(s) << " B " << B;
      }
    }
  sgdstab::CrossCheckOptions c;
  c.lr = 0.8 * sgdstab::weight_decay_threshold(g, 2, Sampling::with_replacement, lambda).eta_star;
  c.batch = 2;
  c.schedule = sgdstab::Schedule::with_replacement;
  c.weight_decay = lambda;
  c.steps = 5;
  c.trajectories = 4000;
  c.blocks = 2000;
  const auto rep = sgdstab::cross_check(g, c);
  EXPECT_EQ(rep.verdict, sgdstab::Verdict::agree) << rep.reason;
  ASSERT_TRUE(rep.rho.has_value());
  EXPECT_REL_NEAR(*rep.rho, wd_explicit_rho(wd_explicit_t(ref::batch_hessians(h, 2, Sampling::with_replacement), c.lr,
                                                          lambda), all), 1e-9);
}
