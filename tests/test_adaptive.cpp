// Losses with per-sample curvature S_i and Adam/RMSProp with a frozen
// preconditioner (theory/loss_curvature.md, theory/adaptive.md), against
// references that do not use the transforms: per-sample Hessians
// J_i^T S_i J_i formed in parameter space, the second-moment maps
// E[A_B (x) A_B] and E[M_B (x) M_B] of the optimizers' own updates
// enumerated over every batch, finite differences of the cross-entropy,
// and the full-batch closed form of Adam.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "reference.hpp"
#include "sgdstab/adaptive.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/loss_curvature.hpp"
#include "sgdstab/montecarlo.hpp"
#include "sgdstab/stability.hpp"
#include "sgdstab/weight_decay.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;

// Softmax probabilities of a random n x C logit matrix.
MatrixXd ad_softmax(const MatrixXd& logits) {
  MatrixXd p(logits.rows(), logits.cols());
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    const VectorXd e = (logits.row(i).array() - logits.row(i).maxCoeff()).exp();
    p.row(i) = (e / e.sum()).transpose();
  }
  return p;
}

// Per-sample Hessians J_i^T S_i J_i in parameter space (S stacked (n C) x C).
std::vector<MatrixXd> ad_curved_hessians(const MatrixXd& J, const MatrixXd& S, Eigen::Index c) {
  std::vector<MatrixXd> h;
  for (Eigen::Index i = 0; i < J.rows() / c; ++i)
    h.push_back(J.middleRows(i * c, c).transpose() * S.middleRows(i * c, c) * J.middleRows(i * c, c));
  return h;
}

// rho of E[kron(A_B, A_B)], A_B = I - eta H_B, on symmetric matrices on range(H).
double ad_sgd_rho(const std::vector<std::pair<MatrixXd, double>>& batches, const MatrixXd& basis, double eta) {
  const Eigen::Index p = batches.front().first.rows();
  MatrixXd k = MatrixXd::Zero(p * p, p * p);
  for (const auto& [hb, prob] : batches) {
    const MatrixXd a = MatrixXd::Identity(p, p) - eta * hb;
    for (Eigen::Index i = 0; i < p; ++i)
      for (Eigen::Index j = 0; j < p; ++j) k.block(j * p, i * p, p, p) += prob * a(j, i) * a;
  }
  const ref::SymEigenSolver es(basis.transpose() * k * basis, false);
  return es.eigenvalues().cwiseAbs().maxCoeff();
}

double ad_bisect(const std::function<double(double)>& rho, double hi, int iterations = 60) {
  double lo = 0.0;
  EXPECT_GT(rho(hi), 1.0) << "bisection bracket";
  for (int it = 0; it < iterations; ++it) {
    const double mid = 0.5 * (lo + hi);
    (rho(mid) <= 1.0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// AdamW's own linearized update with P frozen, state (theta, m) in parameter
// space (torch.optim.AdamW: the decay first, then Adam's step):
//   m' = beta1 m + (1 - beta1) H_B theta,  theta' = (1 - eta wd) theta - eta P^{-1} m'.
// rho of E[kron(M_B, M_B)] over every batch, on the whole 2p-dimensional state
// (null(H) included when H is singular).
double ad_adamw_rho(const std::vector<std::pair<MatrixXd, double>>& batches, const VectorXd& precond, double eta,
                    double beta1, double wd) {
  const Eigen::Index p = batches.front().first.rows(), q = 2 * p;
  const MatrixXd pinv = precond.cwiseInverse().asDiagonal();
  MatrixXd k = MatrixXd::Zero(q * q, q * q);
  for (const auto& [hb, prob] : batches) {
    MatrixXd m(q, q);
    m.topLeftCorner(p, p) = (1.0 - eta * wd) * MatrixXd::Identity(p, p) - eta * (1.0 - beta1) * pinv * hb;
    m.topRightCorner(p, p) = -eta * beta1 * pinv;
    m.bottomLeftCorner(p, p) = (1.0 - beta1) * hb;
    m.bottomRightCorner(p, p) = beta1 * MatrixXd::Identity(p, p);
    for (Eigen::Index i = 0; i < q; ++i)
      for (Eigen::Index j = 0; j < q; ++j) k.block(j * q, i * q, q, q) += prob * m(j, i) * m;
  }
  return ref::EigenSolver(k).eigenvalues().cwiseAbs().maxCoeff();
}

// Adam's own update: AdamW's without the decay.
double ad_adam_rho(const std::vector<std::pair<MatrixXd, double>>& batches, const VectorXd& precond, double eta,
                   double beta1) {
  return ad_adamw_rho(batches, precond, eta, beta1, 0.0);
}

// The message of the sgdstab::invalid_argument f throws, or "no error".
template <class F>
std::string ad_invalid_message(F f) {
  try {
    f();
  } catch (const sgdstab::invalid_argument& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

VectorXd ad_preconditioner(Eigen::Index p, std::uint64_t seed) {
  // Entries spread over two decades, as sqrt(v_hat) + eps are.
  return (ref::gaussian(p, 1, seed).col(0).array() * 1.2).exp();
}

}  // namespace

TEST(LossCurvature, SoftmaxCurvatureIsTheCrossEntropyHessianInTheLogits) {
  const MatrixXd logits = ref::gaussian(4, 3, 11);
  const MatrixXd p = ad_softmax(logits);
  const MatrixXd s = sgdstab::softmax_curvature(p);
  ASSERT_EQ(s.rows(), 12);
  ASSERT_EQ(s.cols(), 3);
  for (Eigen::Index i = 0; i < 4; ++i) {
    // Central differences of the gradient softmax(z) - e_y of -log softmax(z)_y (y drops out).
    const double h = 1e-5;
    for (Eigen::Index k = 0; k < 3; ++k) {
      MatrixXd zp = logits.row(i), zm = logits.row(i);
      zp(0, k) += h;
      zm(0, k) -= h;
      const VectorXd col = (ad_softmax(zp).row(0) - ad_softmax(zm).row(0)).transpose() / (2 * h);
      for (Eigen::Index l = 0; l < 3; ++l) EXPECT_NEAR(s(i * 3 + l, k), col(l), 1e-9) << "sample " << i;
    }
  }
}

TEST(LossCurvature, SquareRootsSquareToTheCurvature) {
  const MatrixXd p = ad_softmax(ref::gaussian(5, 3, 12));
  MatrixXd s = sgdstab::softmax_curvature(p);
  s.middleRows(3, 3) = 2.5 * MatrixXd::Identity(3, 3);  // a weighted square loss sample
  s.middleRows(6, 3).setZero();                          // a sample the loss does not curve
  const MatrixXd r = sgdstab::curvature_square_roots(s, 3);
  for (Eigen::Index i = 0; i < 5; ++i) {
    const MatrixXd ri = r.middleRows(i * 3, 3);
    EXPECT_LE((ri - ri.transpose()).norm(), 1e-15);
    EXPECT_LE((ri * ri - s.middleRows(i * 3, 3)).norm(), 1e-14) << "sample " << i;
    EXPECT_GE(ref::SymEigenSolver(ri, false).eigenvalues().minCoeff(), -1e-12);
  }
}

TEST(LossCurvature, ThresholdMatchesEnumerationWithCurvedPerSampleHessians) {
  struct Case {
    Eigen::Index n, c, p;
  };
  int seed = 0;
  for (const Case& cs : {Case{4, 2, 3}, Case{3, 3, 4}, Case{4, 1, 3}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 80 + seed++);
    MatrixXd S;
    if (cs.c >= 2) {
      S = sgdstab::softmax_curvature(ad_softmax(ref::gaussian(cs.n, cs.c, 90 + seed)));
    } else {  // weighted square loss / sigmoid curvatures
      S = (ref::gaussian(cs.n, 1, 90 + seed).array().square() + 0.1).matrix();
    }
    const auto h = ad_curved_hessians(J, S, cs.c);
    MatrixXd H = MatrixXd::Zero(cs.p, cs.p);
    for (const MatrixXd& hi : h) H += hi / static_cast<double>(cs.n);
    const MatrixXd basis = ref::sym_range_basis(H);
    const auto from_jac = sgdstab::Geometry::from_jacobian(sgdstab::apply_curvature_to_jacobian(J, S, cs.c), cs.c);
    const auto from_gram =
        sgdstab::Geometry::from_gram(sgdstab::apply_curvature_to_gram(J * J.transpose(), S, cs.c), cs.c);
    EXPECT_REL_NEAR(from_jac.lambda_max(), ref::SymEigenSolver(H, false).eigenvalues().maxCoeff(), 1e-12);
    for (Sampling s : kSchemes)
      for (Eigen::Index B : {Eigen::Index{1}, Eigen::Index{2}, cs.n}) {
        const auto batches = ref::batch_hessians(h, B, s);
        const double expected =
            ad_bisect([&](double eta) { return ad_sgd_rho(batches, basis, eta); }, 4.0 / from_jac.lambda_max());
        for (const auto* g : {&from_jac, &from_gram}) {
          const auto r = sgdstab::stability_threshold(*g, B, s);
          ASSERT_TRUE(r.converged()) << r.report.message;
          EXPECT_REL_NEAR(r.eta_star, expected, 1e-8) << sgdstab::to_string(s) << " B " << B << " C " << cs.c;
        }
      }
  }
}

TEST(LossCurvature, IdentityCurvatureIsTheSquareLoss) {
  const MatrixXd J = ref::gaussian(8, 5, 21);
  MatrixXd I(8, 2);
  for (int i = 0; i < 4; ++i) I.middleRows(2 * i, 2) = MatrixXd::Identity(2, 2);
  const MatrixXd Jc = sgdstab::apply_curvature_to_jacobian(J, I, 2);
  EXPECT_EQ((Jc - J).cwiseAbs().maxCoeff(), 0.0);
  const MatrixXd K = J * J.transpose();
  EXPECT_EQ((sgdstab::apply_curvature_to_gram(K, I, 2) - K).cwiseAbs().maxCoeff(), 0.0);
}

TEST(LossCurvature, BadInputIsRejectedByName) {
  const MatrixXd J = ref::gaussian(6, 4, 22);
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const sgdstab::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  MatrixXd p = ad_softmax(ref::gaussian(3, 2, 23));
  MatrixXd bad = p;
  bad(1, 0) += 0.1;
  EXPECT_NE(msg([&] { sgdstab::softmax_curvature(bad); }).find("row 1 of the probabilities sums to"),
            std::string::npos);
  bad = p;
  bad(2, 1) = std::nan("");
  EXPECT_NE(msg([&] { sgdstab::softmax_curvature(bad); }).find("row 2"), std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::softmax_curvature(MatrixXd::Constant(3, 1, 1.0)); }).find("C >= 2"),
            std::string::npos);
  const MatrixXd s = sgdstab::softmax_curvature(p);
  EXPECT_NE(msg([&] { sgdstab::apply_curvature_to_jacobian(J.topRows(4), s, 2); }).find("rows"), std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::apply_curvature_to_jacobian(J, s.leftCols(1), 2); }).find("(n C) x C"),
            std::string::npos);
  MatrixXd asym = s;
  asym(2, 1) += 0.5;  // S_1(0, 1)
  EXPECT_NE(msg([&] { sgdstab::curvature_square_roots(asym, 2); }).find("S_1 (rows 2..3) is not symmetric"),
            std::string::npos);
  MatrixXd neg = s;
  neg.middleRows(4, 2) = -MatrixXd::Identity(2, 2);
  EXPECT_NE(msg([&] { sgdstab::curvature_square_roots(neg, 2); }).find("S_2 (rows 4..5) is not positive semidefinite"),
            std::string::npos);
  VectorXd pc = VectorXd::Ones(4);
  EXPECT_NE(msg([&] { sgdstab::precondition_jacobian(J, VectorXd::Ones(3)); }).find("3 entries"), std::string::npos);
  pc(2) = 0.0;
  EXPECT_NE(msg([&] { sgdstab::precondition_jacobian(J, pc); }).find("entry 2"), std::string::npos);
  pc(2) = -std::numeric_limits<double>::infinity();
  EXPECT_NE(msg([&] { sgdstab::precondition_jacobian(J, pc); }).find("entry 2"), std::string::npos);
}

TEST(Adaptive, AdamThresholdAndRadiusMatchTheEnumeratedAdamMap) {
  struct Case {
    Eigen::Index n, c, p;
  };
  int seed = 0;
  for (const Case& cs : {Case{4, 1, 3}, Case{3, 2, 4}, Case{2, 3, 4}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 100 + seed);
    const VectorXd P = ad_preconditioner(cs.p, 110 + seed++);
    const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), cs.c);
    ASSERT_EQ(g.rank(), cs.p);
    const auto h = ref::per_sample(J, cs.c);  // theta coordinates: no transform in the reference
    for (double beta1 : {0.0, 0.5, 0.9})
      for (Sampling s : kSchemes)
        for (Eigen::Index B : {Eigen::Index{1}, Eigen::Index{2}}) {
          const auto batches = ref::batch_hessians(h, B, s);
          const auto r = sgdstab::adam_threshold(g, B, s, beta1);
          ASSERT_TRUE(r.converged()) << r.report.message;
          const std::string what = sgdstab::to_string(s) + " B " + std::to_string(B) + " beta1 " + std::to_string(beta1);
          // The first crossing of rho = 1 by Adam's own map: below stable, above not.
          EXPECT_LT(ad_adam_rho(batches, P, r.eta_star * (1 - 1e-6), beta1), 1.0) << what;
          EXPECT_GT(ad_adam_rho(batches, P, r.eta_star * (1 + 1e-6), beta1), 1.0) << what;
          for (double f : {0.3, 0.7}) {  // and nothing below it crosses (a coarse look)
            EXPECT_LT(ad_adam_rho(batches, P, f * r.eta_star, beta1), 1.0) << what;
          }
          for (double f : {0.5, 1.3}) {
            const auto rr = sgdstab::adam_spectral_radius(g, f * r.eta_star, B, s, beta1);
            ASSERT_TRUE(rr.converged()) << rr.report.message;
            EXPECT_DOUBLE_EQ(rr.lr, f * r.eta_star);
            EXPECT_REL_NEAR(rr.rho, ad_adam_rho(batches, P, f * r.eta_star, beta1), 1e-8) << what;
          }
          EXPECT_LE(r.eta_low, r.eta_star);
          EXPECT_GE(r.eta_high, r.eta_star);
          EXPECT_LE(r.eta_star, r.eta_mean * (1 + 1e-12));
        }
  }
}

TEST(Adaptive, FullBatchAdamIsCohensPlateau) {
  const Eigen::Index n = 5, p = 4;
  const MatrixXd J = ref::gaussian(n, p, 120);
  const VectorXd P = ad_preconditioner(p, 121);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  MatrixXd H = J.transpose() * J / static_cast<double>(n);
  // lambda_1(P^{-1} H): the generalized problem H x = lambda P x.
  const double lam1 = ref::GenSymEigenSolver(H, MatrixXd(P.asDiagonal())).eigenvalues().maxCoeff();
  for (double beta1 : {0.0, 0.9, 0.99}) {
    const auto r = sgdstab::adam_threshold(g, n, Sampling::without_replacement, beta1);
    ASSERT_TRUE(r.converged()) << r.report.message;
    const double cohen = (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lam1);  // 38 / lambda_1 at beta1 = 0.9
    EXPECT_REL_NEAR(r.eta_star, cohen, 1e-8) << "beta1 " << beta1;
    EXPECT_REL_NEAR(r.eta_mean, cohen, 1e-12) << "beta1 " << beta1;
  }
}

TEST(Adaptive, RmspropWithIdentityIsPlainSgd) {
  const MatrixXd J = ref::gaussian(6, 4, 130);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, VectorXd::Ones(4)), 1);
  const auto plain = sgdstab::Geometry::from_jacobian(J, 1);
  for (Sampling s : kSchemes) {
    const double a = sgdstab::adam_threshold(g, 2, s, 0.0).eta_star;
    EXPECT_REL_NEAR(a, sgdstab::stability_threshold(plain, 2, s).eta_star, 1e-9) << sgdstab::to_string(s);
    EXPECT_REL_NEAR(sgdstab::adam_spectral_radius(g, 0.8 * a, 2, s, 0.0).rho,
                    sgdstab::spectral_radius(plain, 0.8 * a, 2, s).rho, 1e-10);
  }
  EXPECT_THROW(sgdstab::adam_threshold(g, 2, Sampling::with_replacement, 1.0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::adam_threshold(g, 2, Sampling::with_replacement, -0.1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::adam_spectral_radius(g, 0.0, 2, Sampling::with_replacement, 0.9), sgdstab::invalid_argument);
}

TEST(Adaptive, CurveIsThePointwiseThreshold) {
  const MatrixXd J = ref::gaussian(8, 5, 140);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, ad_preconditioner(5, 141)), 1);
  const auto curve = sgdstab::adam_threshold_curve(g, {1, 2, 8}, Sampling::with_replacement, 0.9);
  ASSERT_EQ(curve.size(), 3u);
  for (const auto& r : curve) {
    ASSERT_TRUE(r.converged());
    EXPECT_REL_NEAR(r.eta_star, sgdstab::adam_threshold(g, r.batch, Sampling::with_replacement, 0.9).eta_star, 1e-7);
    for (const auto& e : r.evaluations) EXPECT_LE(e.first, r.eta_mean * (1 + 1e-12));
  }
}

TEST(Adaptive, SampledAdamOperatorAgreesWithTheEnumeratedMap) {
  // Monte Carlo of the linearized optimizer: the library's sampled momentum
  // operator at Adam's heavy-ball lr on the preconditioned geometry, against
  // Adam's own map enumerated in theta coordinates.
  const Eigen::Index n = 4, p = 3;
  const MatrixXd J = ref::gaussian(n, p, 150);
  const VectorXd P = ad_preconditioner(p, 151);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const double beta1 = 0.5;
  const auto h = ref::per_sample(J, 1);
  const double eta_star = sgdstab::adam_threshold(g, 1, Sampling::with_replacement, beta1).eta_star;
  for (double f : {0.8, 1.2}) {
    sgdstab::RadiusEstimateOptions o;
    o.lr = sgdstab::adam_heavy_ball_lr(f * eta_star, beta1);
    o.batch = 1;
    o.schedule = sgdstab::Schedule::with_replacement;
    o.momentum = sgdstab::Momentum{beta1, false};
    o.blocks = 20000;
    o.seed = 5;
    o.confidence = 0.999;  // four intervals in this test: at 0.95 one in five runs would miss somewhere
    const auto est = sgdstab::estimate_radius(g, o);
    ASSERT_TRUE(est.converged()) << est.report.message;
    const double rho = ad_adam_rho(ref::batch_hessians(h, 1, Sampling::with_replacement), P, f * eta_star, beta1);
    EXPECT_LE(est.ci_low, rho) << "f " << f;
    EXPECT_GE(est.ci_high, rho) << "f " << f;
    EXPECT_LT(est.ci_high - est.ci_low, 0.1 * rho);
    // Power: Adam's lr taken as the heavy-ball lr (no 1 - beta1) is outside.
    const double unconverted =
        ad_adam_rho(ref::batch_hessians(h, 1, Sampling::with_replacement), P, f * eta_star / (1 - beta1), beta1);
    EXPECT_TRUE(unconverted < est.ci_low || unconverted > est.ci_high) << "f " << f;
  }
}

namespace {

// lambda_1(P^{-1} H): the generalized problem H x = lambda P x.
double ad_preconditioned_top(const MatrixXd& J, const VectorXd& P, Eigen::Index c) {
  const MatrixXd H = J.transpose() * J / static_cast<double>(J.rows() / c);
  return ref::GenSymEigenSolver(H, MatrixXd(P.asDiagonal())).eigenvalues().maxCoeff();
}

}  // namespace

TEST(Adaptive, AdamwThresholdAndRadiusMatchTheEnumeratedAdamwMap) {
  struct Case {
    Eigen::Index n, c, p;
  };
  int seed = 0;
  // Case{2, 1, 4} has n C = 2 < p = 4: the enumeration covers null(H), where
  // AdamW's decay (not the gradient) acts.
  for (const Case& cs : {Case{4, 1, 3}, Case{3, 2, 4}, Case{2, 1, 4}, Case{2, 3, 4}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 300 + seed);
    const VectorXd P = ad_preconditioner(cs.p, 310 + seed++);
    const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), cs.c);
    const bool full_rank = g.rank() == cs.p;
    const double top = ad_preconditioned_top(J, P, cs.c);
    const auto h = ref::per_sample(J, cs.c);
    for (double beta1 : {0.0, 0.5, 0.9})
      for (double wd_factor : {0.2, 1.0})
        for (Sampling s : kSchemes)
          for (Eigen::Index B : {Eigen::Index{1}, Eigen::Index{2}}) {
            const double wd = wd_factor * top;
            const auto batches = ref::batch_hessians(h, B, s);
            const auto r = sgdstab::adamw_threshold(g, B, s, beta1, wd);
            const std::string what = sgdstab::to_string(s) + " B " + std::to_string(B) + " beta1 " +
                                     std::to_string(beta1) + " wd " + std::to_string(wd_factor) + " lambda_1";
            ASSERT_TRUE(r.converged()) << r.report.message << " " << what;
            EXPECT_EQ(r.weight_decay, wd);
            EXPECT_TRUE(r.decoupled_weight_decay);
            EXPECT_LT(ad_adamw_rho(batches, P, r.eta_star * (1 - 1e-6), beta1, wd), 1.0) << what;
            EXPECT_GT(ad_adamw_rho(batches, P, r.eta_star * (1 + 1e-6), beta1, wd), 1.0) << what;
            for (double f : {0.3, 0.7}) EXPECT_LT(ad_adamw_rho(batches, P, f * r.eta_star, beta1, wd), 1.0) << what;
            EXPECT_REL_NEAR(r.eta_mean, 2.0 * (1.0 + beta1) / ((1.0 - beta1) * top + (1.0 + beta1) * wd), 1e-10)
                << what;
            EXPECT_LE(r.eta_low, r.eta_star);
            EXPECT_GE(r.eta_high, r.eta_star);
            EXPECT_LE(r.eta_star, r.eta_mean * (1 + 1e-12));
            if (!full_rank) continue;  // on range(H) only: at small lr null(H)'s (1 - lr wd)^2 can lead
            for (double f : {0.5, 1.3}) {
              const auto rr = sgdstab::adamw_spectral_radius(g, f * r.eta_star, B, s, beta1, wd);
              ASSERT_TRUE(rr.converged()) << rr.report.message;
              EXPECT_DOUBLE_EQ(rr.lr, f * r.eta_star);
              EXPECT_REL_NEAR(rr.rho, ad_adamw_rho(batches, P, f * r.eta_star, beta1, wd), 1e-8) << what;
            }
          }
  }
}

TEST(Adaptive, FullBatchAdamwIsTheShiftedPlateau) {
  const Eigen::Index n = 5, p = 4;
  const MatrixXd J = ref::gaussian(n, p, 320);
  const VectorXd P = ad_preconditioner(p, 321);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const double top = ad_preconditioned_top(J, P, 1);
  const auto batches = ref::batch_hessians(ref::per_sample(J, 1), n, Sampling::without_replacement);
  for (double beta1 : {0.0, 0.9, 0.99})
    for (double wd : {0.1 * top, 2.0 * top}) {
      const auto r = sgdstab::adamw_threshold(g, n, Sampling::without_replacement, beta1, wd);
      ASSERT_TRUE(r.converged()) << r.report.message;
      const double closed = 2.0 * (1.0 + beta1) / ((1.0 - beta1) * top + (1.0 + beta1) * wd);
      EXPECT_REL_NEAR(r.eta_star, closed, 1e-10) << "beta1 " << beta1;
      // GD's map (no noise) crosses there: the closed form against the enumeration.
      EXPECT_LT(ad_adamw_rho(batches, P, closed * (1 - 1e-6), beta1, wd), 1.0) << "beta1 " << beta1;
      EXPECT_GT(ad_adamw_rho(batches, P, closed * (1 + 1e-6), beta1, wd), 1.0) << "beta1 " << beta1;
    }
}

TEST(Adaptive, AdamwReducesToAdamAndRmspropWithDecoupledDecayToSgdWithL2) {
  const MatrixXd J = ref::gaussian(6, 4, 330);
  const VectorXd P = ad_preconditioner(4, 331);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const double wd = 0.4 * ad_preconditioned_top(J, P, 1);
  for (Sampling s : kSchemes) {
    const std::string what = sgdstab::to_string(s);
    const auto adam = sgdstab::adam_threshold(g, 2, s, 0.9);
    const auto adamw0 = sgdstab::adamw_threshold(g, 2, s, 0.9, 0.0);
    EXPECT_REL_NEAR(adamw0.eta_star, adam.eta_star, 1e-12) << what;
    EXPECT_REL_NEAR(sgdstab::adamw_spectral_radius(g, 0.8 * adam.eta_star, 2, s, 0.9, 0.0).rho,
                    sgdstab::adam_spectral_radius(g, 0.8 * adam.eta_star, 2, s, 0.9).rho, 1e-10)
        << what;
    // beta1 = 0: theta <- (1 - lr wd) theta - lr P^{-1} g is SGD with L2 decay wd in phi (another solver: the pencil).
    const auto rms = sgdstab::adamw_threshold(g, 2, s, 0.0, wd);
    ASSERT_TRUE(rms.converged()) << rms.report.message;
    EXPECT_REL_NEAR(rms.eta_star, sgdstab::weight_decay_threshold(g, 2, s, wd).eta_star, 1e-7) << what;
    EXPECT_REL_NEAR(sgdstab::adamw_spectral_radius(g, 0.9 * rms.eta_star, 2, s, 0.0, wd).rho,
                    sgdstab::weight_decay_spectral_radius(g, 0.9 * rms.eta_star, 2, s, wd).rho, 1e-9)
        << what;
  }
}

TEST(Adaptive, AdamwCurveIsThePointwiseThresholdAndBadDecayIsRejected) {
  const MatrixXd J = ref::gaussian(8, 5, 340);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, ad_preconditioner(5, 341)), 1);
  const double wd = 0.5 * g.lambda_max();
  for (Sampling s : kSchemes) {
    const auto curve = sgdstab::adamw_threshold_curve(g, {1, 2, 8}, s, 0.9, wd);
    ASSERT_EQ(curve.size(), 3u);
    for (const auto& r : curve) {
      ASSERT_TRUE(r.converged()) << r.report.message;
      EXPECT_TRUE(r.decoupled_weight_decay);
      EXPECT_REL_NEAR(r.eta_star, sgdstab::adamw_threshold(g, r.batch, s, 0.9, wd).eta_star, 1e-7);
    }
  }
  const auto msg = [](auto f) { return ad_invalid_message(f); };
  EXPECT_NE(msg([&] { sgdstab::adamw_threshold(g, 2, Sampling::with_replacement, 0.9, -1.0); })
                .find("weight decay must be finite and >= 0"),
            std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adamw_threshold(g, 2, Sampling::with_replacement, 0.9, std::nan("")); })
                .find("weight decay"),
            std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adamw_spectral_radius(g, 1.0, 2, Sampling::with_replacement, 1.0, 0.1); })
                .find("beta1"),
            std::string::npos);
  const sgdstab::SecondMomentOperator q(g, 2, Sampling::with_replacement);
  EXPECT_NE(msg([&] { sgdstab::MomentumOperator(q, 0.1, sgdstab::Momentum{0.9, true}, 0.0, 0.5); }).find("Nesterov"),
            std::string::npos);
}

TEST(Adaptive, AdamwMonteCarloAgreesWithTheEnumeratedMap) {
  // The Monte Carlo of the linearized optimizer with AdamW's decay in heavy-ball
  // units (lr (1 - beta1), mu = wd / (1 - beta1)): the sampled operator's
  // interval covers the rho of AdamW's own map enumerated in theta coordinates
  // and excludes Adam's (no decay); cross_check's simulated moments agree with
  // its exact ones on both sides of eta*.
  const Eigen::Index n = 4, p = 3;
  const MatrixXd J = ref::gaussian(n, p, 350);
  const VectorXd P = ad_preconditioner(p, 351);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const double beta1 = 0.5, wd = 0.5 * ad_preconditioned_top(J, P, 1);
  const auto batches = ref::batch_hessians(ref::per_sample(J, 1), 1, Sampling::with_replacement);
  const auto thr = sgdstab::adamw_threshold(g, 1, Sampling::with_replacement, beta1, wd);
  ASSERT_TRUE(thr.converged()) << thr.report.message;
  for (double f : {0.8, 1.2}) {
    sgdstab::RadiusEstimateOptions o;
    o.lr = sgdstab::adam_heavy_ball_lr(f * thr.eta_star, beta1);
    o.batch = 1;
    o.schedule = sgdstab::Schedule::with_replacement;
    o.momentum = sgdstab::Momentum{beta1, false};
    o.decoupled_weight_decay = wd / (1.0 - beta1);
    o.blocks = 20000;
    o.seed = 9;
    o.confidence = 0.999;
    const auto est = sgdstab::estimate_radius(g, o);
    ASSERT_TRUE(est.converged()) << est.report.message;
    const double rho = ad_adamw_rho(batches, P, f * thr.eta_star, beta1, wd);
    EXPECT_LE(est.ci_low, rho) << "f " << f;
    EXPECT_GE(est.ci_high, rho) << "f " << f;
    EXPECT_LT(est.ci_high - est.ci_low, 0.1 * rho);
    const double no_decay = ad_adamw_rho(batches, P, f * thr.eta_star, beta1, 0.0);
    EXPECT_TRUE(no_decay < est.ci_low || no_decay > est.ci_high) << "f " << f;

    sgdstab::CrossCheckOptions c;
    static_cast<sgdstab::MonteCarloRun&>(c) = o;
    c.steps = 20;
    c.trajectories = 2000;
    c.blocks = 400;
    c.confidence = 0.95;
    const sgdstab::CrossCheckReport rep = sgdstab::cross_check(g, c);
    ASSERT_EQ(rep.status(), sgdstab::Status::converged) << rep.reason;
    EXPECT_EQ(rep.verdict, sgdstab::Verdict::agree) << rep.reason;
    EXPECT_REL_NEAR(*rep.eta_star / (1.0 - beta1), thr.eta_star, 1e-9);
    EXPECT_REL_NEAR(*rep.rho, rho, 1e-8);
  }
  sgdstab::SimulationOptions bad;
  bad.lr = 0.1;
  bad.batch = 1;
  bad.momentum = sgdstab::Momentum{0.5, true};
  bad.decoupled_weight_decay = 0.1;
  EXPECT_THROW(bad.validate(g), sgdstab::invalid_argument);
  bad.momentum.nesterov = false;
  bad.decoupled_weight_decay = -0.1;
  EXPECT_THROW(bad.validate(g), sgdstab::invalid_argument);
}

TEST(Adaptive, AdamRegionEqualsSingleThresholdsAndItsBandHoldsBetweenPoints) {
  const Eigen::Index n = 6, p = 4;
  const MatrixXd J = ref::gaussian(n, p, 360);
  const VectorXd P = ad_preconditioner(p, 361);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const double top = ad_preconditioned_top(J, P, 1);
  const auto h = ref::per_sample(J, 1);
  const std::vector<Sampling> schemes(std::begin(kSchemes), std::end(kSchemes));
  for (double beta1 : {0.5, 0.9})
    for (double wd : {0.0, 0.5 * top}) {
      const auto region = sgdstab::adam_region(g, schemes, {1, 3, 6}, beta1, wd);
      const std::string what = "beta1 " + std::to_string(beta1) + " wd " + std::to_string(wd);
      ASSERT_TRUE(region.converged()) << region.report.message << " " << what;
      EXPECT_TRUE(region.adam);
      EXPECT_EQ(region.decoupled_weight_decay, wd > 0.0);
      EXPECT_EQ(region.weight_decay, wd);
      EXPECT_REL_NEAR(region.eta_mean, 2.0 * (1.0 + beta1) / ((1.0 - beta1) * top + (1.0 + beta1) * wd), 1e-10)
          << what;
      EXPECT_EQ(region.eta_gd, region.eta_mean);
      for (const auto& curve : region.curves) {
        for (const auto& pt : curve.points) {
          const auto single = sgdstab::adamw_threshold(g, pt.batch, curve.sampling, beta1, wd);
          EXPECT_REL_NEAR(pt.eta_star, single.eta_star, 1e-7) << what << " B " << pt.batch;
          EXPECT_LE(pt.eta_low, pt.eta_star);
          EXPECT_GE(pt.eta_high, pt.eta_star);
        }
        // Between computed points (B = 2, 4 were not): the enumerated AdamW map crosses inside band().
        for (Eigen::Index B : {Eigen::Index{2}, Eigen::Index{4}}) {
          const auto batches = ref::batch_hessians(h, B, curve.sampling);
          const double crossing = ad_bisect(
              [&](double eta) { return ad_adamw_rho(batches, P, eta, beta1, wd); }, region.eta_mean * 1.01,
              40);  // 1e-12 relative: far inside any band's width
          const sgdstab::EtaInterval band = region.band(curve.sampling, static_cast<double>(B));
          EXPECT_LE(band.low, crossing * (1 + 1e-9)) << what << " " << sgdstab::to_string(curve.sampling) << " B " << B;
          EXPECT_GE(band.high, crossing * (1 - 1e-9)) << what << " " << sgdstab::to_string(curve.sampling) << " B " << B;
          EXPECT_GT(band.low, 0.0);
        }
      }
    }
  EXPECT_THROW(sgdstab::adam_region(g, schemes, {1, 6}, 0.0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::adam_region(g, schemes, {1, 6}, 0.9, -1.0), sgdstab::invalid_argument);
}

namespace {

// Adam's own linearized update with its L2 decay (torch.optim.Adam's
// weight_decay: g + wd theta before P^{-1}), P frozen, state (theta, m):
//   m' = beta1 m + (1 - beta1)(H_B + wd) theta,  theta' = theta - eta P^{-1} m'.
// ad_adam_l2_step is its M_B on (theta, m); ad_adam_l2_rho the rho of
// E[kron(M_B, M_B)] over every batch on the whole 2p-dimensional state.
// beta1 = 0 is RMSProp's theta' = theta - eta P^{-1} (H_B + wd) theta.
MatrixXd ad_adam_l2_step(const MatrixXd& hb, const VectorXd& precond, double eta, double beta1, double wd) {
  const Eigen::Index p = hb.rows(), q = 2 * p;
  const MatrixXd pinv = precond.cwiseInverse().asDiagonal();
  const MatrixXd id = MatrixXd::Identity(p, p);
  const MatrixXd g = hb + wd * id;
  MatrixXd m(q, q);
  m.topLeftCorner(p, p) = id - eta * (1.0 - beta1) * pinv * g;
  m.topRightCorner(p, p) = -eta * beta1 * pinv;
  m.bottomLeftCorner(p, p) = (1.0 - beta1) * g;
  m.bottomRightCorner(p, p) = beta1 * id;
  return m;
}

double ad_adam_l2_rho(const std::vector<std::pair<MatrixXd, double>>& batches, const VectorXd& precond, double eta,
                      double beta1, double wd) {
  const Eigen::Index q = 2 * batches.front().first.rows();
  MatrixXd k = MatrixXd::Zero(q * q, q * q);
  for (const auto& [hb, prob] : batches) {
    const MatrixXd m = ad_adam_l2_step(hb, precond, eta, beta1, wd);
    for (Eigen::Index i = 0; i < q; ++i)
      for (Eigen::Index j = 0; j < q; ++j) k.block(j * q, i * q, q, q) += prob * m(j, i) * m;
  }
  return ref::EigenSolver(k).eigenvalues().cwiseAbs().maxCoeff();
}

}  // namespace

TEST(Adaptive, AdamL2ThresholdMatchesTheEnumeratedMapWithL2Decay) {
  struct Case {
    Eigen::Index n, c, p;
  };
  int seed = 0;
  // Case{2, 1, 4} and Case{2, 2, 5} have n C < p: null(H) is reached by the decay
  // through P^{-1}, which couples it to range(H) (what the reduced coordinates cannot hold).
  for (const Case& cs : {Case{4, 1, 3}, Case{3, 2, 4}, Case{2, 1, 4}, Case{2, 2, 5}, Case{2, 3, 4}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 360 + seed);
    const VectorXd P = ad_preconditioner(cs.p, 370 + seed++);
    const double top = ad_preconditioned_top(J, P, cs.c);
    const auto h = ref::per_sample(J, cs.c);
    const MatrixXd H = J.transpose() * J / static_cast<double>(cs.n);
    for (double beta1 : {0.0, 0.5, 0.9})
      for (double wd_factor : {0.05, 1.0}) {
        const double wd = wd_factor * top;
        // Full batch: the mean's limit 2 (1 + beta1) / ((1 - beta1) lambda_max(P^{-1}(H + wd))).
        const double lmax =
            ref::GenSymEigenSolver(MatrixXd(H + wd * MatrixXd::Identity(cs.p, cs.p)), MatrixXd(P.asDiagonal()))
                .eigenvalues()
                .maxCoeff();
        for (Sampling s : kSchemes)
          for (Eigen::Index B : {Eigen::Index{1}, Eigen::Index{2}}) {
            const auto batches = ref::batch_hessians(h, B, s);
            const auto r = sgdstab::adam_l2_threshold(J, cs.c, P, B, s, beta1, wd);
            const std::string what = sgdstab::to_string(s) + " B " + std::to_string(B) + " beta1 " +
                                     std::to_string(beta1) + " wd " + std::to_string(wd_factor) + " n " +
                                     std::to_string(cs.n) + " p " + std::to_string(cs.p);
            ASSERT_TRUE(r.converged()) << r.report.message << " " << what;
            EXPECT_EQ(r.weight_decay, wd);
            EXPECT_FALSE(r.decoupled_weight_decay);
            EXPECT_REL_NEAR(r.eta_mean, 2.0 * (1.0 + beta1) / ((1.0 - beta1) * lmax), 1e-10) << what;
            EXPECT_LT(ad_adam_l2_rho(batches, P, r.eta_star * (1 - 1e-6), beta1, wd), 1.0) << what;
            EXPECT_GT(ad_adam_l2_rho(batches, P, r.eta_star * (1 + 1e-6), beta1, wd), 1.0) << what;
            for (double f : {0.3, 0.7}) EXPECT_LT(ad_adam_l2_rho(batches, P, f * r.eta_star, beta1, wd), 1.0) << what;
            EXPECT_LE(r.eta_low, r.eta_star);
            EXPECT_GE(r.eta_high, r.eta_star);
            EXPECT_LE(r.eta_star, r.eta_mean * (1 + 1e-12));
            // The radius on the whole state (null(H) included) is the enumerated rho.
            for (double f : {0.5, 1.3}) {
              const auto rr = sgdstab::adam_l2_spectral_radius(J, cs.c, P, f * r.eta_star, B, s, beta1, wd);
              ASSERT_TRUE(rr.converged()) << rr.report.message << " " << what;
              EXPECT_DOUBLE_EQ(rr.lr, f * r.eta_star);
              EXPECT_REL_NEAR(rr.rho, ad_adam_l2_rho(batches, P, f * r.eta_star, beta1, wd), 1e-8) << what;
            }
          }
      }
  }
}

TEST(Adaptive, AdamL2ReducesToSgdWithL2AtPEqualOneAndToAdamWithoutDecay) {
  const MatrixXd J = ref::gaussian(10, 4, 380);  // n C = 10 > p: H full rank
  const MatrixXd Jr = ref::gaussian(3, 6, 381);  // n C = 3 < p: null(H) of dimension 3
  for (const MatrixXd* jac : {&J, &Jr}) {
    const Eigen::Index p = jac->cols(), n = jac->rows();
    const VectorXd ones = VectorXd::Ones(p);
    const auto g = sgdstab::Geometry::from_jacobian(*jac, 1);
    const double wd = 0.3 * g.lambda_max();
    for (Sampling s : kSchemes) {
      const std::string what = sgdstab::to_string(s) + " p " + std::to_string(p);
      // P = 1: the mean commutes with H, and weight_decay_momentum_threshold
      // (in H's r x r eigenbasis) answers at lr (1 - beta1).
      for (double beta1 : {0.0, 0.9}) {
        const auto r = sgdstab::adam_l2_threshold(*jac, 1, ones, 2, s, beta1, wd);
        ASSERT_TRUE(r.converged()) << r.report.message << " " << what;
        const auto hb = sgdstab::weight_decay_momentum_threshold(g, 2, s, sgdstab::Momentum{beta1, false}, wd);
        ASSERT_TRUE(hb.converged()) << hb.report.message;
        EXPECT_REL_NEAR(r.eta_star, hb.eta_star / (1.0 - beta1), 1e-8) << what << " beta1 " << beta1;
        if (g.rank() < p) continue;  // the r x r radius is range(H)'s, this one the whole state's
        const double lr = 1.1 * r.eta_star;
        EXPECT_REL_NEAR(sgdstab::adam_l2_spectral_radius(*jac, 1, ones, lr, 2, s, beta1, wd).rho,
                        sgdstab::weight_decay_momentum_spectral_radius(g, lr * (1.0 - beta1), 2, s,
                                                                       sgdstab::Momentum{beta1, false}, wd)
                            .rho,
                        1e-8)
            << what << " beta1 " << beta1;
      }
      // RMSProp with P = 1 is SGD with L2 decay (the pencil solver of weight_decay.hpp).
      EXPECT_REL_NEAR(sgdstab::adam_l2_threshold(*jac, 1, ones, 2, s, 0.0, wd).eta_star,
                      sgdstab::weight_decay_threshold(g, 2, s, wd).eta_star, 1e-7)
          << what;
      // No decay: Adam on the preconditioned geometry.
      const VectorXd P = ad_preconditioner(p, 382);
      const auto gp = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(*jac, P), 1);
      EXPECT_REL_NEAR(sgdstab::adam_l2_threshold(*jac, 1, P, 2, s, 0.9, 0.0).eta_star,
                      sgdstab::adam_threshold(gp, 2, s, 0.9).eta_star, 1e-12)
          << what;
      // The curve is the pointwise threshold.
      const auto curve = sgdstab::adam_l2_threshold_curve(*jac, 1, P, {1, 2, n}, s, 0.9, wd);
      ASSERT_EQ(curve.size(), 3u);
      for (const auto& c : curve) {
        ASSERT_TRUE(c.converged()) << c.report.message;
        EXPECT_FALSE(c.decoupled_weight_decay);
        EXPECT_REL_NEAR(c.eta_star, sgdstab::adam_l2_threshold(*jac, 1, P, c.batch, s, 0.9, wd).eta_star, 1e-7)
            << what << " B " << c.batch;
      }
    }
  }
}

TEST(Adaptive, AdamL2LanczosAgreesWithDenseAndWithTheMapAtSmallDecays) {
  // p = 8 (36-dimensional iterates): Lanczos (forced) against the dense path
  // and, at decays down to 1e-6 lambda_max (where G's entries on null(H) are
  // about 1e6 times its others and the shift sigma must not follow them),
  // against the enumerated map; and continuity into wd = 0, which the r x r
  // solver answers.
  const Eigen::Index n = 3, c = 2, p = 8;  // n C = 6 < p: null(H) of dimension 2
  const MatrixXd J = ref::gaussian(n * c, p, 392);
  const VectorXd P = ad_preconditioner(p, 393);
  const double top = ad_preconditioned_top(J, P, c);
  const auto h = ref::per_sample(J, c);
  sgdstab::SolverOptions lanczos, dense;
  lanczos.method = sgdstab::Method::lanczos;
  dense.method = sgdstab::Method::dense;
  for (Sampling s : kSchemes)
    for (double wd_factor : {1e-6, 1e-3, 0.3}) {
      const double wd = wd_factor * top;
      const std::string what = sgdstab::to_string(s) + " wd " + std::to_string(wd_factor);
      const auto rl = sgdstab::adam_l2_threshold(J, c, P, 2, s, 0.9, wd, lanczos);
      const auto rd = sgdstab::adam_l2_threshold(J, c, P, 2, s, 0.9, wd, dense);
      ASSERT_TRUE(rl.converged()) << rl.report.message << " " << what;
      ASSERT_TRUE(rd.converged()) << rd.report.message << " " << what;
      EXPECT_EQ(rl.report.method, sgdstab::Method::lanczos) << what;
      EXPECT_REL_NEAR(rl.eta_star, rd.eta_star, 1e-8) << what;
      const auto batches = ref::batch_hessians(h, 2, s);
      EXPECT_LT(ad_adam_l2_rho(batches, P, rl.eta_star * (1 - 1e-6), 0.9, wd), 1.0) << what;
      EXPECT_GT(ad_adam_l2_rho(batches, P, rl.eta_star * (1 + 1e-6), 0.9, wd), 1.0) << what;
      // Arnoldi (forced) on the 136-dimensional packed state against the enumeration.
      const auto rr = sgdstab::adam_l2_spectral_radius(J, c, P, 1.2 * rl.eta_star, 2, s, 0.9, wd, lanczos);
      ASSERT_TRUE(rr.converged()) << rr.report.message << " " << what;
      EXPECT_EQ(rr.report.method, sgdstab::Method::lanczos) << what;
      EXPECT_REL_NEAR(rr.rho, ad_adam_l2_rho(batches, P, 1.2 * rl.eta_star, 0.9, wd), 1e-8) << what;
    }
  const auto gp = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), c);
  for (Sampling s : kSchemes)
    EXPECT_REL_NEAR(sgdstab::adam_l2_threshold(J, c, P, 2, s, 0.9, 1e-9 * top, lanczos).eta_star,
                    sgdstab::adam_threshold(gp, 2, s, 0.9).eta_star, 1e-6)
        << sgdstab::to_string(s);
}

TEST(Adaptive, AdamL2RejectsBadInputByName) {
  const MatrixXd J = ref::gaussian(4, 3, 390);
  const VectorXd P = ad_preconditioner(3, 391);
  const auto msg = [](auto f) { return ad_invalid_message(f); };
  const Sampling s = Sampling::with_replacement;
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, P, 2, s, 0.9, -0.1); }).find("weight decay must be finite"),
            std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, P, 2, s, 0.9, std::nan("")); }).find("weight decay"),
            std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, P, 2, s, 1.0, 0.1); }).find("beta1"), std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, VectorXd::Ones(2), 2, s, 0.9, 0.1); }).find("preconditioner"),
            std::string::npos);
  VectorXd bad = P;
  bad(1) = -1.0;
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, bad, 2, s, 0.9, 0.1); }).find("preconditioner"),
            std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold(J, 1, P, 5, s, 0.9, 0.1); }).find("batch"), std::string::npos);
  EXPECT_NE(msg([&] { sgdstab::adam_l2_threshold_curve(J, 1, P, {}, s, 0.9, 0.1); }).find("empty"),
            std::string::npos);
}

TEST(Adaptive, AdamL2RegionPointsAndBandHoldTheEnumeratedMapWithL2Decay) {
  struct Case {
    Eigen::Index n, c, p;
  };
  int seed = 0;
  // The second has n C < p: the decay reaches null(H) through P^{-1}.
  for (const Case& cs : {Case{6, 1, 4}, Case{4, 1, 5}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 400 + seed);
    const VectorXd P = ad_preconditioner(cs.p, 410 + seed++);
    const double top = ad_preconditioned_top(J, P, cs.c);
    const auto h = ref::per_sample(J, cs.c);
    const MatrixXd H = J.transpose() * J / static_cast<double>(cs.n);
    const std::vector<Sampling> schemes(std::begin(kSchemes), std::end(kSchemes));
    const std::vector<Eigen::Index> computed =
        cs.n > 4 ? std::vector<Eigen::Index>{1, 3, cs.n} : std::vector<Eigen::Index>{1, cs.n};
    for (double beta1 : {0.0, 0.9}) {
      const double wd = 0.3 * top;
      const auto region = sgdstab::adam_l2_region(J, cs.c, P, schemes, computed, beta1, wd);
      const std::string what = "beta1 " + std::to_string(beta1) + " n " + std::to_string(cs.n) + " p " +
                               std::to_string(cs.p);
      ASSERT_TRUE(region.converged()) << region.report.message << " " << what;
      EXPECT_TRUE(region.adam);
      EXPECT_FALSE(region.decoupled_weight_decay);
      EXPECT_EQ(region.weight_decay, wd);
      EXPECT_EQ(region.momentum.beta, beta1);
      // The full-batch limit 2 (1 + beta1) / ((1 - beta1) lambda_max(P^{-1}(H + wd))), by a dense pencil.
      const double lmax =
          ref::GenSymEigenSolver(MatrixXd(H + wd * MatrixXd::Identity(cs.p, cs.p)), MatrixXd(P.asDiagonal()))
              .eigenvalues()
              .maxCoeff();
      EXPECT_REL_NEAR(region.eta_mean, 2.0 * (1.0 + beta1) / ((1.0 - beta1) * lmax), 1e-10) << what;
      EXPECT_EQ(region.eta_gd, region.eta_mean);
      ASSERT_EQ(region.curves.size(), schemes.size());
      for (const auto& curve : region.curves) {
        const std::string where = what + " " + sgdstab::to_string(curve.sampling);
        ASSERT_EQ(curve.points.size(), computed.size());
        for (const auto& pt : curve.points) {
          // Each point is where the enumerated map with the decay crosses 1.
          const auto batches = ref::batch_hessians(h, pt.batch, curve.sampling);
          EXPECT_LT(ad_adam_l2_rho(batches, P, pt.eta_star * (1 - 1e-6), beta1, wd), 1.0) << where << " B " << pt.batch;
          if (pt.eta_star < region.eta_mean * (1 - 1e-9))  // at the mean's limit rho touches 1 from below
            EXPECT_GT(ad_adam_l2_rho(batches, P, pt.eta_star * (1 + 1e-6), beta1, wd), 1.0)
                << where << " B " << pt.batch;
          EXPECT_LE(pt.eta_low, pt.eta_star);
          EXPECT_GE(pt.eta_high, pt.eta_star);
        }
        // Between computed points (every B not computed): the enumerated crossing lies inside band().
        for (Eigen::Index B = 2; B < cs.n; ++B) {
          if (std::find(computed.begin(), computed.end(), B) != computed.end()) continue;
          const auto batches = ref::batch_hessians(h, B, curve.sampling);
          const double crossing = ad_bisect(
              [&](double eta) { return ad_adam_l2_rho(batches, P, eta, beta1, wd); }, region.eta_mean * 1.01, 40);
          const sgdstab::EtaInterval band = region.band(curve.sampling, static_cast<double>(B));
          EXPECT_LE(band.low, crossing * (1 + 1e-9)) << where << " B " << B;
          EXPECT_GE(band.high, crossing * (1 - 1e-9)) << where << " B " << B;
          EXPECT_GT(band.low, 0.0) << where << " B " << B;
        }
      }
    }
  }
  // Without decay: Adam's region and, for RMSProp, plain SGD's on J P^{-1/2}.
  const MatrixXd J = ref::gaussian(6, 4, 420);
  const VectorXd P = ad_preconditioner(4, 421);
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, P), 1);
  const std::vector<Sampling> two = {Sampling::without_replacement, Sampling::with_replacement};
  const auto adam = sgdstab::adam_l2_region(J, 1, P, two, {1, 3}, 0.9, 0.0);
  const auto rms = sgdstab::adam_l2_region(J, 1, P, two, {1, 3}, 0.0, 0.0);
  for (std::size_t k = 0; k < two.size(); ++k)
    for (std::size_t j = 0; j < 2; ++j) {
      const auto& a = adam.curves[k].points[j];
      EXPECT_REL_NEAR(a.eta_star, sgdstab::adam_threshold(g, a.batch, two[k], 0.9).eta_star, 1e-7);
      const auto& r = rms.curves[k].points[j];
      EXPECT_REL_NEAR(r.eta_star, sgdstab::stability_threshold(g, r.batch, two[k]).eta_star, 1e-7);
    }
  EXPECT_TRUE(adam.adam);
  EXPECT_FALSE(rms.adam);
  // Bad lists and decays are named before the p x p work.
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_region(J, 1, P, {}, {1}, 0.9, 0.1); }).find("scheme"),
            std::string::npos);
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_region(J, 1, P, two, {7}, 0.9, 0.1); }).find("batch"),
            std::string::npos);
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_region(J, 1, P, two, {1}, 0.9, -0.1); }).find("weight decay"),
            std::string::npos);
}

TEST(Adaptive, AdamL2MonteCarloAgreesWithTheEnumeratedMapWithL2Decay) {
  // adam_l2_cross_check: the whole 2p state of phi = P^{1/2} theta. Its exact moments equal Adam's own map
  // with the decay enumerated over every batch in theta coordinates (E|phi_t|^2 = tr(P Cov(theta_t)),
  // theta_0 ~ N(0, P^{-1}/p), m_0 = 0); its rho is the enumerated one; the sampled operator's interval
  // covers it and excludes the map without decay; the simulated moments agree (verdict).
  struct Case {
    Eigen::Index n, c, p;
    double beta1;
    Sampling sampling;
  };
  int seed = 0;
  // The second has n < p: the decay reaches null(H) through P^{-1}.
  for (const Case& cs : {Case{4, 1, 3, 0.5, Sampling::with_replacement}, Case{3, 1, 4, 0.0, Sampling::bernoulli},
                         Case{3, 2, 5, 0.9, Sampling::without_replacement}}) {
    const MatrixXd J = ref::gaussian(cs.n * cs.c, cs.p, 430 + seed);
    const VectorXd P = ad_preconditioner(cs.p, 440 + seed++);
    const double wd = 0.4 * ad_preconditioned_top(J, P, cs.c);
    const auto batches = ref::batch_hessians(ref::per_sample(J, cs.c), 2, cs.sampling);
    const auto thr = sgdstab::adam_l2_threshold(J, cs.c, P, 2, cs.sampling, cs.beta1, wd);
    ASSERT_TRUE(thr.converged()) << thr.report.message;
    for (double f : {0.8, 1.2}) {
      const std::string what = "beta1 " + std::to_string(cs.beta1) + " f " + std::to_string(f);
      const double lr = f * thr.eta_star;
      sgdstab::CrossCheckOptions c;
      c.lr = lr;
      c.batch = 2;
      c.schedule = cs.sampling == Sampling::bernoulli             ? sgdstab::Schedule::bernoulli
                   : cs.sampling == Sampling::with_replacement ? sgdstab::Schedule::with_replacement
                                                               : sgdstab::Schedule::without_replacement;
      c.weight_decay = wd;
      // Many trajectories and blocks: products of random matrices make |phi_t|^2 heavy-tailed even below
      // eta*, and the intervals are asymptotic (the AdamW test above samples as much).
      c.steps = 12;
      c.trajectories = 20000;
      c.blocks = 5000;
      c.confidence = 0.999;
      c.seed = 11;
      const sgdstab::CrossCheckReport rep = sgdstab::adam_l2_cross_check(J, cs.c, P, cs.beta1, c);
      ASSERT_EQ(rep.status(), sgdstab::Status::converged) << rep.reason << " " << what;
      EXPECT_EQ(rep.verdict, sgdstab::Verdict::agree) << rep.reason << " " << what;
      EXPECT_REL_NEAR(*rep.eta_star, thr.eta_star, 1e-12) << what;
      const double rho = ad_adam_l2_rho(batches, P, lr, cs.beta1, wd);
      EXPECT_REL_NEAR(*rep.rho, rho, 1e-8) << what;
      EXPECT_LE(rep.radius.ci_low, rho) << what;
      EXPECT_GE(rep.radius.ci_high, rho) << what;
      const double no_decay = ad_adam_l2_rho(batches, P, lr, cs.beta1, 0.0);
      EXPECT_TRUE(no_decay < rep.radius.ci_low || no_decay > rep.radius.ci_high) << what << " " << no_decay;
      // The exact moments against the enumerated map in theta coordinates.
      const Eigen::Index p = cs.p, q = 2 * p;
      const MatrixXd pinv = P.cwiseInverse().asDiagonal();
      MatrixXd z = MatrixXd::Zero(q, q);
      z.topLeftCorner(p, p) = pinv / static_cast<double>(p);
      ASSERT_EQ(rep.exact.squared_norm.size(), 13u);
      for (std::size_t t = 0; t <= 12; ++t) {
        EXPECT_REL_NEAR(rep.exact.squared_norm[t], (P.asDiagonal() * z.topLeftCorner(p, p)).trace(), 1e-9)
            << what << " t " << t;
        MatrixXd next = MatrixXd::Zero(q, q);
        for (const auto& [hb, prob] : batches) {
          const MatrixXd m = ad_adam_l2_step(hb, P, lr, cs.beta1, wd);
          next += prob * m * z * m.transpose();
        }
        z = next;
      }
    }
  }
  const MatrixXd J = ref::gaussian(4, 3, 450);
  const VectorXd P = ad_preconditioner(3, 451);
  sgdstab::CrossCheckOptions c;
  c.lr = 0.1;
  c.batch = 2;
  c.weight_decay = 0.1;
  // Reshuffling: no exact answer, the Monte Carlo estimates only.
  c.schedule = sgdstab::Schedule::reshuffle;
  c.steps = 3;
  c.trajectories = 100;
  c.blocks = 100;
  const sgdstab::CrossCheckReport shuffled = sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c);
  EXPECT_EQ(shuffled.verdict, sgdstab::Verdict::inconclusive);
  EXPECT_FALSE(shuffled.rho.has_value());
  EXPECT_GT(shuffled.radius.rho_hat, 0.0);
  c.schedule = sgdstab::Schedule::without_replacement;
  // Bad options are named.
  c.lr = -1.0;
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c); }).find("options.lr"),
            std::string::npos);
  c.lr = 0.1;
  c.momentum = sgdstab::Momentum{0.5, false};
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c); }).find("options.momentum"),
            std::string::npos);
  c.momentum = sgdstab::Momentum{};
  c.decoupled_weight_decay = 0.1;
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c); }).find("decoupled"),
            std::string::npos);
  c.decoupled_weight_decay = 0.0;
  c.weight_decay = 0.0;
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c); }).find("weight_decay"),
            std::string::npos);
  c.weight_decay = 0.1;
  c.batch = 5;
  EXPECT_NE(ad_invalid_message([&] { sgdstab::adam_l2_cross_check(J, 1, P, 0.9, c); }).find("batch"),
            std::string::npos);
}
