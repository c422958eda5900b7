// The band from Jacobian products only (stability_band on a LinearizedModel,
// include/sgdstab/band.hpp, theory/band.md section 5) against eta* by batch
// enumeration (tests/reference.hpp), the exact solver, Wu, Ma & E's X = Pi
// bound computed densely in parameter space from the enumerated E[H_xi^2],
// and the closed form of full-batch GD; and the products of the models.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <unsupported/Eigen/KroneckerProduct>
#include <cmath>
#include <string>
#include <vector>

#include "reference.hpp"
#include "sgdstab/band.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/linearized_model.hpp"
#include "sgdstab/momentum.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/stability.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Sampling;

namespace {

using ref::kSchemes;
constexpr double kRoundoff = 1e-9;

// A model that gives products only (the default, probing sample_grams).
class ProductsOnly : public sgdstab::LinearizedModel {
 public:
  ProductsOnly(MatrixXd j, Eigen::Index c) : j_(std::move(j)), c_(c) {}
  Eigen::Index samples() const override { return j_.rows() / c_; }
  Eigen::Index outputs() const override { return c_; }
  Eigen::Index params() const override { return j_.cols(); }
  MatrixXd jacobian_times(const MatrixXd& v) const override { return j_ * v; }
  MatrixXd jacobian_transpose_times(const MatrixXd& u) const override { return j_.transpose() * u; }

 private:
  MatrixXd j_;
  Eigen::Index c_;
};

// A model whose products are broken in a chosen way: 0 one row short, 1 a
// NaN, 2 only the first column of a block.
class BrokenModel : public ProductsOnly {
 public:
  BrokenModel(MatrixXd j, Eigen::Index c, int how) : ProductsOnly(std::move(j), c), how_(how) {}
  MatrixXd jacobian_times(const MatrixXd& v) const override {
    MatrixXd out = ProductsOnly::jacobian_times(v);
    if (how_ == 0) return out.topRows(out.rows() - 1);  // one row short
    if (how_ == 2) return v.cols() > 1 ? out.leftCols(1) : out;  // right for one column only
    out(0, 0) = NAN;
    return out;
  }

 private:
  int how_;
};

// Wu, Ma & E's X = Pi bound, densely in parameter space: 2 / lambda_max of
// H^{+1/2} E[H_xi^2] H^{+1/2} on range(H), E[H_xi^2] by enumerating batches.
// At larger n (too many batches to enumerate) with replacement only, where
// B i.i.d. draws give E[H_xi^2] = (1 - 1/B) H^2 + (1/B) (1/n) sum_i h_i^2.
double pi_bound(const MatrixXd& j, Eigen::Index c, Eigen::Index b, Sampling s) {
  const std::vector<MatrixXd> h = ref::per_sample(j, c);
  MatrixXd second = MatrixXd::Zero(j.cols(), j.cols()), mean = second;
  if (h.size() <= 8) {
    for (const auto& [hb, prob] : ref::batch_hessians(h, b, s)) {
      second += prob * hb * hb;
      mean += prob * hb;
    }
  } else {
    EXPECT_EQ(s, Sampling::with_replacement);
    const double inv_b = 1.0 / static_cast<double>(b), inv_n = 1.0 / static_cast<double>(h.size());
    for (const MatrixXd& hi : h) {
      mean += inv_n * hi;
      second += inv_b * inv_n * hi * hi;
    }
    second += (1.0 - inv_b) * mean * mean;
  }
  Eigen::SelfAdjointEigenSolver<MatrixXd> es(mean);
  const double top = es.eigenvalues().maxCoeff();
  MatrixXd half_inverse = MatrixXd::Zero(j.cols(), j.cols());
  for (Eigen::Index k = 0; k < j.cols(); ++k)
    if (es.eigenvalues()(k) > 1e-10 * top)
      half_inverse += es.eigenvectors().col(k) * es.eigenvectors().col(k).transpose() / std::sqrt(es.eigenvalues()(k));
  const MatrixXd m = half_inverse * second * half_inverse;
  return 2.0 / Eigen::SelfAdjointEigenSolver<MatrixXd>(0.5 * (m + m.transpose())).eigenvalues().maxCoeff();
}

std::string where(Eigen::Index n, Eigen::Index c, Eigen::Index p, Eigen::Index b, Sampling s) {
  return "n " + std::to_string(n) + " c " + std::to_string(c) + " p " + std::to_string(p) + " B " +
         std::to_string(b) + " " + sgdstab::to_string(s);
}

}  // namespace

TEST(LinearizedModel, ProductsAndSampleGramsMatchTheDenseJacobian) {
  const Eigen::Index n = 7, c = 3, p = 5;
  const MatrixXd j = ref::gaussian(n * c, p, 41);
  const sgdstab::JacobianModel dense(j, c);
  ProductsOnly probing(j, c);
  probing.probe_chunk = 3;  // 7 samples: chunks of 3, 3 and 1
  const MatrixXd v = ref::gaussian(p, 2, 42), u = ref::gaussian(n * c, 2, 43);
  EXPECT_LE((dense.jacobian_times(v) - j * v).norm(), 1e-13 * (j * v).norm());
  EXPECT_LE((dense.jacobian_transpose_times(u) - j.transpose() * u).norm(), 1e-13 * (j.transpose() * u).norm());
  const MatrixXd hv = j.transpose() * j * v / static_cast<double>(n);
  EXPECT_LE((probing.hessian_times(v) - hv).norm(), 1e-13 * hv.norm());
  const MatrixXd gram = j * j.transpose();
  for (Eigen::Index i = 0; i < n; ++i) {
    const MatrixXd block = gram.block(i * c, i * c, c, c);
    EXPECT_LE((dense.sample_grams().middleRows(i * c, c) - block).norm(), 1e-13 * block.norm()) << "sample " << i;
    EXPECT_LE((probing.sample_grams().middleRows(i * c, c) - block).norm(), 1e-13 * block.norm()) << "sample " << i;
  }
  // A Geometry's factor as the Jacobian: the same H up to rotation (its eigenvalues).
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
  const sgdstab::JacobianModel reduced = sgdstab::JacobianModel::from_geometry(g);
  EXPECT_EQ(reduced.params(), g.rank());
  const MatrixXd hr = reduced.hessian_times(MatrixXd::Identity(g.rank(), g.rank()));
  const VectorXd d = Eigen::SelfAdjointEigenSolver<MatrixXd>(hr).eigenvalues().reverse();
  EXPECT_LE((d - g.hessian_eigenvalues()).norm(), 1e-12 * d.norm());
}

TEST(LinearizedModel, RejectsBadJacobians) {
  EXPECT_THROW(sgdstab::JacobianModel(MatrixXd(0, 3), 1), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::JacobianModel(MatrixXd::Ones(5, 3), 2), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::JacobianModel(MatrixXd::Ones(4, 3), 0), sgdstab::invalid_argument);
  MatrixXd j = MatrixXd::Ones(4, 3);
  j(2, 1) = INFINITY;
  try {
    sgdstab::JacobianModel model(j, 2);
    ADD_FAILURE() << "no error for an infinite entry";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("entry (2, 1)"), std::string::npos) << e.what();
  }
  const sgdstab::JacobianModel model(MatrixXd::Ones(4, 3), 2);
  EXPECT_THROW(model.jacobian_times(MatrixXd::Ones(2, 1)), sgdstab::invalid_argument);
  EXPECT_THROW(model.jacobian_transpose_times(MatrixXd::Ones(3, 1)), sgdstab::invalid_argument);
}

// Every scheme, C = 1..3, B = 1..n, full-rank and rank-deficient Jacobians,
// a full subspace (upper side exact) and a small one (upper side a bound):
// eta* from the enumeration inside the band, rho(T) on the right side of 1
// at each side, and the lower side equal to the dense X = Pi bound (when
// the Gram is nonsingular and Lanczos spans R^{nC}) or below it.
TEST(BandMatrixFree, ContainsTheEnumeratedThresholdForEverySchemeAndBatch) {
  struct Case {
    Eigen::Index n, c, p;
  };
  for (const Case k : {Case{5, 1, 8}, Case{4, 2, 9}, Case{4, 3, 7}, Case{5, 1, 3}}) {  // the last two: n C > p
    const MatrixXd j = ref::gaussian(k.n * k.c, k.p, 200 + static_cast<std::uint64_t>(k.n * 10 + k.c));
    const sgdstab::JacobianModel model(j, k.c);
    const bool gram_nonsingular = k.n * k.c <= k.p;
    for (Sampling s : kSchemes)
      for (Eigen::Index b = 1; b <= k.n; ++b) {
        const ref::Reference r = ref::make_reference(j, k.c, b, s);
        const double eta = r.eta_star(), pi = pi_bound(j, k.c, b, s);
        SCOPED_TRACE(where(k.n, k.c, k.p, b, s));
        for (Eigen::Index subspace : {Eigen::Index(64), Eigen::Index(2)}) {
          sgdstab::BandOptions o;
          o.subspace = subspace;
          const sgdstab::BandResult band = sgdstab::stability_band(model, b, s, o);
          SCOPED_TRACE("subspace " + std::to_string(subspace));
          ASSERT_TRUE(band.converged()) << band.report.message;
          EXPECT_EQ(band.eta_low_kind, "certified");  // Lanczos spans R^{nC}: the certified side is exact
          EXPECT_EQ(band.eta_low, band.eta_low_certified);
          EXPECT_LE(band.eta_low, eta * (1 + kRoundoff));
          EXPECT_GE(band.eta_high, eta * (1 - kRoundoff));
          EXPECT_LE(r.rho(band.eta_low), 1 + kRoundoff);
          EXPECT_GE(r.rho(band.eta_high), 1 - kRoundoff);
          if (gram_nonsingular)
            EXPECT_REL_NEAR(band.eta_low, pi, 1e-9);
          else
            EXPECT_LE(band.eta_low, pi * (1 + kRoundoff));
          if (subspace >= k.p) EXPECT_REL_NEAR(band.eta_high, eta, 1e-8);  // span(L) = range(H): exact
          EXPECT_GE(band.subspace_dimension, std::min({subspace, k.p, k.n * k.c}));  // Krylov space of H
          EXPECT_LE(band.subspace_dimension, std::min(k.p, std::min(subspace, k.n * k.c) + o.noise_vectors));
          EXPECT_GT(band.products, 0);
          EXPECT_EQ(band.report.matvecs, band.products);
        }
      }
  }
}

// Larger problems against the exact solver, with subspaces smaller than the
// rank: each band contains eta*, the upper side decreases as the subspace
// grows (the Krylov spaces of one start are nested), and the Geometry's
// reduced factor gives a band around the same eta*. Three spectra: Gaussian
// (bunched), decaying columns (0.9^k), and clustered (each sample's rows
// scaled by 2^u, u in (-1, 1), like the region benchmark's hard class).
TEST(BandMatrixFree, ContainsTheExactThresholdAndTightensWithTheSubspace) {
  const Eigen::Index n = 24, c = 2, p = 60;
  for (int kind = 0; kind <= 2; ++kind) {
    MatrixXd j = ref::gaussian(n * c, p, 9 + static_cast<std::uint64_t>(kind));
    if (kind == 1)
      for (Eigen::Index k = 0; k < p; ++k) j.col(k) *= std::pow(0.9, static_cast<double>(k));
    if (kind == 2) {
      const MatrixXd u = ref::gaussian(n, 1, 99);  // N(0, 1) mapped into (-1, 1) by tanh
      for (Eigen::Index i = 0; i < n; ++i) j.middleRows(i * c, c) *= std::pow(2.0, std::tanh(u(i, 0)));
    }
    const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
    const sgdstab::JacobianModel model(j, c), reduced = sgdstab::JacobianModel::from_geometry(g);
    sgdstab::SolverOptions so;
    so.tolerance = 1e-11;
    for (Sampling s : kSchemes)
      for (Eigen::Index b : {Eigen::Index(1), Eigen::Index(4), Eigen::Index(12), n}) {
        const sgdstab::ThresholdResult exact = sgdstab::stability_threshold(g, b, s, so);
        ASSERT_TRUE(exact.converged()) << exact.report.message;
        SCOPED_TRACE("spectrum " + std::to_string(kind) + " " + where(n, c, p, b, s));
        double previous = INFINITY;
        for (Eigen::Index m : {Eigen::Index(4), Eigen::Index(12), Eigen::Index(30), Eigen::Index(48)}) {
          sgdstab::BandOptions o;
          o.subspace = m;
          o.lanczos_steps = 12;  // fewer than n C = 48: the lower side is a bound, not the X = Pi value
          const sgdstab::BandResult band = sgdstab::stability_band(model, b, s, o);
          ASSERT_TRUE(band.converged()) << band.report.message;
          EXPECT_LE(band.eta_low_certified, exact.eta_star * (1 + 1e-8)) << "m " << m;
          EXPECT_GE(band.eta_high, exact.eta_star * (1 - 1e-8)) << "m " << m;
          EXPECT_LE(band.eta_high, previous * (1 + 1e-10)) << "m " << m;
          previous = band.eta_high;
          const sgdstab::BandResult other = sgdstab::stability_band(reduced, b, s, o);
          EXPECT_LE(other.eta_low_certified, exact.eta_star * (1 + 1e-8)) << "m " << m;
          EXPECT_GE(other.eta_high, exact.eta_star * (1 - 1e-8)) << "m " << m;
        }
        EXPECT_REL_NEAR(previous, exact.eta_star, 1e-7);  // m = 48 = rank: the whole range(H)
      }
  }
}

// The doublings (theory/band.md, section 5.1): the upper side with
// subspace_doublings is the fixed-subspace band of the dimension it reached
// (the Lanczos run continued is the run of that length), it contains the
// exact eta*, it falls with each doubling, it is eta* itself once the Krylov
// part spans range(H), and the number of doublings follows the rule: double
// while the band is wider than the tolerance, stop after a doubling that
// closed less than a tenth of the gap to eta_low. Reference: fixed-subspace
// bands of dimension m0 2^d and the exact threshold of the Gram.
TEST(BandMatrixFree, DoublingTheSubspaceFollowsItsRuleAndContainsTheExactThreshold) {
  const Eigen::Index n = 30, c = 2, p = 150, m0 = 5;  // rank n C = 60 = the Krylov limit
  for (int kind = 0; kind <= 1; ++kind) {
    MatrixXd j = ref::gaussian(n * c, p, 61 + static_cast<std::uint64_t>(kind));
    if (kind == 1)
      for (Eigen::Index k = 0; k < p; ++k) j.col(k) *= std::pow(0.95, static_cast<double>(k));
    const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
    const sgdstab::JacobianModel model(j, c);
    sgdstab::SolverOptions tight;
    tight.tolerance = 1e-11;
    for (Sampling s : {Sampling::with_replacement, Sampling::without_replacement})
      for (Eigen::Index b : {Eigen::Index(1), Eigen::Index(6)}) {
        SCOPED_TRACE("spectrum " + std::to_string(kind) + " " + where(n, c, p, b, s));
        const double eta = sgdstab::stability_threshold(g, b, s, tight).eta_star;
        sgdstab::BandOptions o;
        o.subspace = m0;
        o.noise_vectors = 2;
        o.tolerance = 1e-3;
        std::vector<sgdstab::BandResult> fixed;  // m0, 2 m0, 4 m0, ... up to the rank
        for (Eigen::Index m = m0;; m *= 2) {
          sgdstab::BandOptions f = o;
          f.subspace = std::min(m, n * c);
          f.subspace_doublings = 0;
          fixed.push_back(sgdstab::stability_band(model, b, s, f));
          ASSERT_TRUE(fixed.back().converged()) << fixed.back().report.message;
          EXPECT_EQ(fixed.back().subspace_doublings, 0);
          EXPECT_GE(fixed.back().eta_high, eta * (1 - 1e-8)) << "m " << m;
          if (m >= n * c) break;
        }
        EXPECT_REL_NEAR(fixed.back().eta_high, eta, 1e-7);  // the whole range(H)
        const Eigen::Index most = static_cast<Eigen::Index>(fixed.size()) - 1;
        for (Eigen::Index allowed : {Eigen::Index(1), Eigen::Index(2), most}) {
          o.subspace_doublings = allowed;
          const sgdstab::BandResult grown = sgdstab::stability_band(model, b, s, o);
          ASSERT_TRUE(grown.converged()) << grown.report.message;
          // The rule, from the fixed-subspace bands.
          Eigen::Index d = 0, at = 0;  // doublings, and the fixed band that gave the least eta_high
          double best = fixed[0].eta_high;
          while (d < allowed && best - fixed[0].eta_low > o.tolerance * best) {
            ++d;
            const double gain = best - fixed[d].eta_high, gap = best - fixed[0].eta_low;
            if (fixed[d].eta_high < best) {
              best = fixed[d].eta_high;
              at = d;
            }
            if (!(gain >= 0.1 * gap)) break;
          }
          SCOPED_TRACE("allowed " + std::to_string(allowed));
          EXPECT_EQ(grown.subspace_doublings, d) << grown.report.message;
          EXPECT_EQ(grown.eta_low, fixed[0].eta_low);  // the lower side does not depend on the subspace
          EXPECT_REL_NEAR(grown.eta_high, best, 1e-10);
          EXPECT_EQ(grown.subspace_dimension, fixed[at].subspace_dimension);
          EXPECT_EQ(grown.report.iterations, fixed[d].report.iterations);  // every Lanczos vector, the doublings' too
          EXPECT_GE(grown.eta_high, eta * (1 - 1e-8));
          EXPECT_LE(grown.eta_high, fixed[0].eta_high);
          if (d > 0) {
            EXPECT_NE(grown.report.message.find(std::to_string(d) + (d == 1 ? " doubling" : " doublings") +
                                                " of its Krylov part from 5"),
                      std::string::npos)
                << grown.report.message;
            EXPECT_GT(grown.products, fixed[0].products);
          }
          if (d == most) EXPECT_REL_NEAR(grown.eta_high, eta, 1e-7);
        }
        o.subspace_doublings = most;
        o.tolerance = 0.99;  // every band is narrower: no doubling
        const sgdstab::BandResult narrow = sgdstab::stability_band(model, b, s, o);
        EXPECT_EQ(narrow.subspace_doublings, 0);
        EXPECT_EQ(narrow.products, fixed[0].products);
      }
  }
  sgdstab::BandOptions bad;
  bad.subspace_doublings = 11;
  EXPECT_THROW(bad.validate(), sgdstab::invalid_argument);
  bad.subspace_doublings = -1;
  EXPECT_THROW(bad.validate(), sgdstab::invalid_argument);
}

// B = n without replacement is GD: eta* = 2 / lambda_max(H), and with the
// whole range and full Lanczos both sides meet there.
TEST(BandMatrixFree, FullBatchGradientDescentIsExact) {
  const Eigen::Index n = 6, c = 2, p = 15;
  const MatrixXd j = ref::gaussian(n * c, p, 77);
  const double top = Eigen::SelfAdjointEigenSolver<MatrixXd>(j.transpose() * j / static_cast<double>(n))
                         .eigenvalues()
                         .maxCoeff();
  const sgdstab::BandResult band = sgdstab::stability_band(sgdstab::JacobianModel(j, c), n);
  EXPECT_REL_NEAR(band.eta_high, 2.0 / top, 1e-10);
  EXPECT_REL_NEAR(band.eta_low, 2.0 / top, 1e-10);
}

// Several batch sizes at once: each band contains eta*, and the shared
// products (the subspace and the per-sample Grams) are paid once.
TEST(BandMatrixFree, SeveralBatchSizesShareTheirProducts) {
  const Eigen::Index n = 20, c = 1, p = 40;
  const MatrixXd j = ref::gaussian(n * c, p, 5);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
  const sgdstab::JacobianModel model(j, c);
  sgdstab::BandOptions o;
  o.subspace = 10;
  const std::vector<Eigen::Index> batches = {1, 5, 20};
  const std::vector<sgdstab::BandResult> bands = sgdstab::stability_bands(model, batches, Sampling::with_replacement, o);
  ASSERT_EQ(bands.size(), batches.size());
  Eigen::Index separately = 0;
  for (std::size_t k = 0; k < batches.size(); ++k) {
    const double eta = sgdstab::stability_threshold(g, batches[k], Sampling::with_replacement).eta_star;
    EXPECT_EQ(bands[k].batch, batches[k]);
    EXPECT_LE(bands[k].eta_low, eta * (1 + 1e-8));
    EXPECT_GE(bands[k].eta_high, eta * (1 - 1e-8));
    separately += sgdstab::stability_band(model, batches[k], Sampling::with_replacement, o).products;
  }
  EXPECT_LT(bands[0].products, separately);
}

// Several schemes at once (the band region): every band contains the exact
// eta* of its scheme and batch size (the exact solver; rank-deficient J:
// n C = 16 > p = 12),
// each scheme's bands are those of its own stability_bands call (the same
// random stream, so equal to the last bit), and the work that depends on
// neither the scheme nor B is paid once: the call makes exactly (S - 1)
// times the shared products fewer than the S separate calls (the shared
// part measured as one call's products minus its per-B part).
TEST(BandMatrixFree, SchemesShareTheirProductsAndGiveEachSchemesBands) {
  const Eigen::Index n = 8, c = 2, p = 12;
  const MatrixXd j = ref::gaussian(n * c, p, 29);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
  const sgdstab::JacobianModel model(j, c);
  sgdstab::BandOptions o;
  o.subspace = 5;
  o.lanczos_steps = 10;
  o.noise_vectors = 4;
  o.seed = 7;
  const std::vector<Eigen::Index> batches = {1, 3, 8};
  const std::vector<Sampling> schemes(std::begin(kSchemes), std::end(kSchemes));
  const auto region = sgdstab::stability_band_region(model, schemes, batches, o);
  ASSERT_EQ(region.size(), schemes.size());
  Eigen::Index separately = 0;
  for (std::size_t k = 0; k < schemes.size(); ++k) {
    const std::vector<sgdstab::BandResult> alone = sgdstab::stability_bands(model, batches, schemes[k], o);
    separately += alone.front().products;
    ASSERT_EQ(region[k].size(), batches.size());
    for (std::size_t i = 0; i < batches.size(); ++i) {
      SCOPED_TRACE(sgdstab::to_string(schemes[k]) + " B = " + std::to_string(batches[i]));
      const sgdstab::BandResult& r = region[k][i];
      EXPECT_EQ(r.sampling, schemes[k]);
      EXPECT_EQ(r.batch, batches[i]);
      sgdstab::SolverOptions tight;
      tight.tolerance = 1e-11;
      const double eta = sgdstab::stability_threshold(g, batches[i], schemes[k], tight).eta_star;
      EXPECT_LE(r.eta_low_certified, eta * (1 + 1e-8));
      EXPECT_LE(r.eta_low, eta * (1 + 1e-8));
      EXPECT_GE(r.eta_high, eta * (1 - 1e-8));
      EXPECT_EQ(r.eta_low, alone[i].eta_low);
      EXPECT_EQ(r.eta_high, alone[i].eta_high);
      EXPECT_EQ(r.eta_low_kind, alone[i].eta_low_kind);
      EXPECT_EQ(r.subspace_dimension, alone[i].subspace_dimension);
      EXPECT_EQ(r.subspace_doublings, alone[i].subspace_doublings);
      EXPECT_EQ(r.report.message, alone[i].report.message);
      EXPECT_EQ(r.products, region[0][0].products);  // the whole call's, on every result
    }
  }
  EXPECT_GT(separately, region[0][0].products);
  // With a fixed subspace (no doublings, whose products depend on which
  // bands ask for them) a call's products = shared (Lanczos on H) + one
  // part per B; the part of B = 8 is products({3, 8}) - products({3}).
  o.subspace_doublings = 0;
  separately = 0;
  for (Sampling s : schemes) separately += sgdstab::stability_bands(model, batches, s, o).front().products;
  const Eigen::Index saved = separately - sgdstab::stability_band_region(model, schemes, batches, o)[0][0].products;
  EXPECT_GT(saved, 0);
  const auto products = [&](const std::vector<Eigen::Index>& b) {
    return sgdstab::stability_band_region(model, {Sampling::with_replacement}, b, o)[0][0].products;
  };
  const Eigen::Index shared = products({8}) - (products({3, 8}) - products({3}));
  EXPECT_EQ(shared, 2 * o.subspace + 1);  // J^T u, then J q and J^T(J q) per Lanczos vector
  EXPECT_EQ(saved, static_cast<Eigen::Index>(schemes.size() - 1) * shared);
  EXPECT_THROW(sgdstab::stability_band_region(model, {}, batches, o), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_band_region(model, {Sampling::bernoulli, Sampling::bernoulli}, batches, o),
               sgdstab::invalid_argument);
}

// The probabilistic lower side: with few Lanczos vectors and a failure
// probability delta it may exceed the X = Pi value it bounds (a failure);
// over many seeds the failures must stay below delta, and the certified
// side must never exceed eta*.
TEST(BandMatrixFree, ProbabilisticSideFailsLessOftenThanDelta) {
  const Eigen::Index n = 60, c = 1, p = 90;  // n C <= p: 2 / lambda_max(M) is the X = Pi bound exactly
  const MatrixXd j = ref::gaussian(n * c, p, 3);
  const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, c);
  const sgdstab::JacobianModel model(j, c);
  const Eigen::Index b = 6;
  const double pi = pi_bound(j, c, b, Sampling::with_replacement);
  const double eta = sgdstab::stability_threshold(g, b, Sampling::with_replacement).eta_star;
  sgdstab::BandOptions o;
  o.subspace = 4;
  o.lanczos_steps = 8;
  o.delta = 0.5;
  int failures = 0, probabilistic = 0;
  const int seeds = 200;
  for (int seed = 1; seed <= seeds; ++seed) {
    o.seed = static_cast<std::uint64_t>(seed);
    const sgdstab::BandResult band = sgdstab::stability_band(model, b, Sampling::with_replacement, o);
    EXPECT_LE(band.eta_low_certified, pi * (1 + kRoundoff)) << "seed " << seed;
    EXPECT_LE(band.eta_low_certified, eta * (1 + kRoundoff)) << "seed " << seed;
    if (band.eta_low_kind == "probabilistic") {
      ++probabilistic;
      EXPECT_EQ(band.delta, o.delta);
      EXPECT_GE(band.eta_low, band.eta_low_certified);
      if (band.eta_low > pi * (1 + kRoundoff)) ++failures;
    }
  }
  EXPECT_GT(probabilistic, 0);  // the probabilistic side was tighter at least once
  EXPECT_LE(failures, static_cast<int>(o.delta * seeds)) << failures << " failures in " << seeds << " seeds";
  RecordProperty("failures", failures);
  RecordProperty("probabilistic", probabilistic);
}

TEST(BandMatrixFree, RejectsBadArgumentsAndBrokenModels) {
  const MatrixXd j = ref::gaussian(8, 5, 1);
  const sgdstab::JacobianModel model(j, 2);
  EXPECT_THROW(sgdstab::stability_band(model, 0), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_band(model, 5), sgdstab::invalid_argument);
  EXPECT_THROW(sgdstab::stability_bands(model, {}), sgdstab::invalid_argument);
  sgdstab::BandOptions o;
  o.subspace = 0;
  EXPECT_THROW(sgdstab::stability_band(model, 2, Sampling::with_replacement, o), sgdstab::invalid_argument);
  o = {};
  o.delta = 1.0;
  EXPECT_THROW(sgdstab::stability_band(model, 2, Sampling::with_replacement, o), sgdstab::invalid_argument);
  o = {};
  o.lanczos_steps = 1;
  EXPECT_THROW(sgdstab::stability_band(model, 2, Sampling::with_replacement, o), sgdstab::invalid_argument);
  for (int how = 0; how <= 1; ++how) {
    const BrokenModel broken(j, 2, how);
    try {
      sgdstab::stability_band(broken, 2);
      ADD_FAILURE() << "no error for a broken model (" << how << ")";
    } catch (const sgdstab::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("jacobian_times()"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(sgdstab::stability_band(sgdstab::JacobianModel(MatrixXd::Zero(4, 3), 1), 2), sgdstab::invalid_argument);
  // Right for single columns, wrong for blocks: the default probing of
  // sample_grams() meets the block and names it.
  try {
    sgdstab::stability_band(BrokenModel(j, 2, 2), 2);
    ADD_FAILURE() << "no error for block products of the wrong shape";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sample_grams (probing)"), std::string::npos) << e.what();
  }
}

// Per-sample Grams that disagree with the products (half the true blocks):
// the band refuses, caught on H's Krylov basis (tr T > tr H) when it spans
// range(H), else by M's Lanczos (tr Q^T K Q > tr K).
TEST(BandMatrixFree, RefusesSampleGramsThatDisagreeWithTheProducts) {
  class HalfGrams : public ProductsOnly {
   public:
    using ProductsOnly::ProductsOnly;
    MatrixXd sample_grams() const override { return 0.5 * ProductsOnly::sample_grams(); }
  };
  const MatrixXd j = ref::gaussian(12, 20, 8);
  sgdstab::BandOptions o;
  o.lanczos_steps = 12;
  try {
    sgdstab::stability_band(HalfGrams(j, 2), 6, Sampling::without_replacement, o);  // GD: M = K / n
    ADD_FAILURE() << "no error for inconsistent sample_grams()";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("disagree with its products"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("exceeds tr H"), std::string::npos) << e.what();  // caught on H's basis
  }
  // H's two Krylov vectors hold less than half of tr H, so only M's
  // Lanczos (all of R^{nC}, tr Q^T K Q = the true tr K) finds it.
  const MatrixXd wide = ref::gaussian(12, 200, 9);
  o.subspace = 2;
  try {
    sgdstab::stability_band(HalfGrams(wide, 2), 6, Sampling::without_replacement, o);
    ADD_FAILURE() << "no error for inconsistent sample_grams()";
  } catch (const sgdstab::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tr Q^T K Q"), std::string::npos) << e.what();
  }
}

// The certified bound on lambda_max(M) (theory/band.md, eqs. 8, 8' and 8''),
// M = (alpha / n) K + beta blockdiag(K_ii), against M formed densely: with
// few Lanczos vectors it is never below lambda_max(M), on four spectra
// (Gaussian, decaying columns, samples of very different norms, a gradient
// direction shared by every sample), every scheme, B = 1, 3, 10, 29, two
// starts. Where H's Krylov space is all of range(H) (p = 3 <= the subspace)
// the bound is at most Weyl's alpha lambda_max(H) + beta max_i
// lambda_max(K_ii). And the split trace term of eq. 8' is what gives the
// bound in some cases: below Weyl's bound with the exact lambda_max(H) (so
// not Weyl's) and below (alpha/n + beta) tr K - m lambda_max(M) <= tr M -
// tr T <= eq. 8's unsplit value (so not eq. 8 alone).
TEST(BandMatrixFree, CertifiedLowerSideBoundsTheDenseLambdaMaxOfM) {
  const Eigen::Index n = 30, c = 2;
  int split_wins = 0;
  for (Eigen::Index p : {Eigen::Index(80), Eigen::Index(3)})
    for (int kind = 0; kind <= 3; ++kind) {
      MatrixXd j = ref::gaussian(n * c, p, 40 + static_cast<std::uint64_t>(kind + p));
      if (kind == 1)
        for (Eigen::Index k = 0; k < p; ++k) j.col(k) *= std::pow(0.85, static_cast<double>(k));
      if (kind == 2) {
        const MatrixXd u = ref::gaussian(n, 1, 77);
        for (Eigen::Index i = 0; i < n; ++i) j.middleRows(i * c, c) *= std::pow(4.0, std::tanh(u(i, 0)));
      }
      if (kind == 3) j += 3.0 * ref::gaussian(n * c, 1, 78) * ref::gaussian(1, p, 79);
      const MatrixXd k = j * j.transpose();
      MatrixXd blocks = MatrixXd::Zero(n * c, n * c);
      double block_top = 0.0;
      for (Eigen::Index i = 0; i < n; ++i) {
        blocks.block(i * c, i * c, c, c) = k.block(i * c, i * c, c, c);
        block_top = std::max(block_top,
                             Eigen::SelfAdjointEigenSolver<MatrixXd>(k.block(i * c, i * c, c, c)).eigenvalues().maxCoeff());
      }
      const double h_top =
          Eigen::SelfAdjointEigenSolver<MatrixXd>(j.transpose() * j / static_cast<double>(n)).eigenvalues().maxCoeff();
      const sgdstab::JacobianModel model(j, c);
      const double trace = k.trace();
      for (Sampling s : kSchemes)
        for (Eigen::Index b : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(10), Eigen::Index(29)}) {
          const sgdstab::SamplingFactors f = sgdstab::sampling_factors(s, n, b);
          const MatrixXd m = (f.alpha / static_cast<double>(n)) * k + f.beta * blocks;
          const double top = Eigen::SelfAdjointEigenSolver<MatrixXd>(m).eigenvalues().maxCoeff();
          const double weyl = f.alpha * h_top + f.beta * block_top;
          SCOPED_TRACE("kind " + std::to_string(kind) + " " + where(n, c, p, b, s));
          for (Eigen::Index steps : {Eigen::Index(3), Eigen::Index(10)})
            for (std::uint64_t seed : {1, 2}) {
              sgdstab::BandOptions o;
              o.subspace = 8;
              o.lanczos_steps = steps;
              o.seed = seed;
              o.subspace_doublings = 0;
              const sgdstab::BandResult band = sgdstab::stability_band(model, b, s, o);
              const double bound = 2.0 / band.eta_low_certified;  // the certified lambda-bar >= lambda_max(M)
              EXPECT_GE(bound, top * (1 - kRoundoff)) << "steps " << steps << " seed " << seed;
              if (p <= o.subspace) EXPECT_LE(bound, weyl * (1 + kRoundoff)) << "steps " << steps << " seed " << seed;
              const double unsplit = (f.alpha / static_cast<double>(n) + f.beta) * trace - static_cast<double>(steps) * top;
              if (bound < 0.99 * std::min(weyl, unsplit)) ++split_wins;
            }
        }
    }
  EXPECT_GT(split_wins, 0);
  RecordProperty("split_wins", split_wins);
}

// K proportional to I (orthogonal samples of equal norm): Lanczos closes
// after one vector (an invariant subspace); the band still contains eta*.
TEST(BandMatrixFree, OrthogonalSamplesOfEqualNormCloseLanczosAtOnce) {
  const Eigen::Index n = 4, p = 6;
  MatrixXd j = MatrixXd::Zero(n, p);
  for (Eigen::Index i = 0; i < n; ++i) j(i, i) = std::sqrt(2.0);
  for (Sampling s : kSchemes)
    for (Eigen::Index b = 1; b <= n; ++b) {
      const double eta = ref::make_reference(j, 1, b, s).eta_star();
      const sgdstab::BandResult band = sgdstab::stability_band(sgdstab::JacobianModel(j, 1), b, s);
      SCOPED_TRACE(where(n, 1, p, b, s));
      EXPECT_LE(band.eta_low, eta * (1 + kRoundoff));
      EXPECT_GE(band.eta_high, eta * (1 - kRoundoff));
      EXPECT_GT(band.eta_low, 0.0);
    }
}

namespace {

// Momentum SGD's second-moment map by enumeration, in parameter space on the
// doubled state z = (delta, eta v): E[M_xi (x) M_xi] over every batch with
// M_xi = [[I - c eta H_xi, -g I], [eta H_xi, beta I]] (theory/momentum.md,
// eq. 1; heavy-ball c = 1, g = beta; Nesterov c = 1 + beta, g = beta^2), and
// its spectral radius. H must be nonsingular (n C >= p, full column rank),
// else its null space adds the eigenvalue 1.
double band_momentum_rho(const std::vector<std::pair<MatrixXd, double>>& batches, double eta, double beta,
                         bool nesterov) {
  const Eigen::Index p = batches.front().first.rows();
  const double c = nesterov ? 1.0 + beta : 1.0, g = nesterov ? beta * beta : beta;
  MatrixXd t = MatrixXd::Zero(4 * p * p, 4 * p * p);
  for (const auto& [hb, w] : batches) {
    MatrixXd m = MatrixXd::Zero(2 * p, 2 * p);
    m.topLeftCorner(p, p) = MatrixXd::Identity(p, p) - c * eta * hb;
    m.topRightCorner(p, p) = -g * MatrixXd::Identity(p, p);
    m.bottomLeftCorner(p, p) = eta * hb;
    m.bottomRightCorner(p, p) = beta * MatrixXd::Identity(p, p);
    t += w * Eigen::kroneckerProduct(m, m).eval();
  }
  return Eigen::EigenSolver<MatrixXd>(t, false).eigenvalues().cwiseAbs().maxCoeff();
}

}  // namespace

// Momentum (theory/band.md, section 6): every band holds the enumerated
// radius on its sides (rho(eta_low) <= 1 <= rho(eta_high)), contains the
// exact solver's eta*, equals the closed-form full-batch limit at B = n
// without replacement, and neither side is vacuous: on these cases
// (2026-12-07) eta_low / eta* was at least 0.32 for heavy-ball and 0.17 for
// Nesterov (beta = 0.9, C = 3, B = 1), eta_high / eta* at most 4.45 (median
// 1.12, against up to 17 for the full-batch limit alone); the floors and
// the ceiling below are 0.3, 0.15 and 5. A Geometry input gives the band of
// its reduced factor.
TEST(BandMatrixFree, MomentumBandHoldsTheEnumeratedRadius) {
  struct Case {
    Eigen::Index n, c, p;
  };
  for (const Case k : {Case{5, 1, 4}, Case{3, 2, 5}, Case{3, 3, 6}}) {  // n C >= p: H nonsingular
    const MatrixXd j = ref::gaussian(k.n * k.c, k.p, 900 + static_cast<std::uint64_t>(k.n * 10 + k.c));
    const sgdstab::JacobianModel model(j, k.c);
    const sgdstab::Geometry g = sgdstab::Geometry::from_jacobian(j, k.c);
    const std::vector<MatrixXd> h = ref::per_sample(j, k.c);
    for (Sampling s : kSchemes)
      for (Eigen::Index b = 1; b <= k.n; ++b) {
        const auto batches = ref::batch_hessians(h, b, s);
        for (const double beta : {0.3, 0.9})
          for (const bool nesterov : {false, true}) {
            SCOPED_TRACE(where(k.n, k.c, k.p, b, s) + " beta " + std::to_string(beta) +
                         (nesterov ? " Nesterov" : " heavy-ball"));
            sgdstab::BandOptions o;
            o.momentum = beta;
            o.nesterov = nesterov;
            o.delta = 0.0;
            const sgdstab::BandResult band = sgdstab::stability_band(model, b, s, o);
            ASSERT_TRUE(band.converged()) << band.report.message;
            EXPECT_EQ(band.low_witness, "momentum-modes");
            EXPECT_EQ(band.eta_low_kind, "certified");
            EXPECT_LE(band.eta_low, band.eta_high);
            EXPECT_LE(band_momentum_rho(batches, band.eta_low, beta, nesterov), 1 + kRoundoff);
            EXPECT_GE(band_momentum_rho(batches, band.eta_high, beta, nesterov), 1 - kRoundoff);
            const sgdstab::MomentumThresholdResult exact =
                sgdstab::momentum_threshold(g, b, s, sgdstab::Momentum{beta, nesterov});
            ASSERT_TRUE(exact.converged()) << exact.report.message;
            EXPECT_LE(band.eta_low, exact.eta_high * (1 + kRoundoff));
            EXPECT_GE(band.eta_high, exact.eta_low * (1 - kRoundoff));
            EXPECT_GE(band.eta_low, (nesterov ? 0.15 : 0.3) * exact.eta_star);
            EXPECT_LE(band.eta_high, exact.eta_mean * (1 + kRoundoff));
            EXPECT_LE(band.eta_high, 5.0 * exact.eta_star);
            if (s == Sampling::without_replacement && b == k.n) EXPECT_REL_NEAR(band.eta_low, exact.eta_mean, 1e-8);
            const sgdstab::BandResult from_geometry = sgdstab::stability_band(g, b, s, o);
            EXPECT_REL_NEAR(from_geometry.eta_low, band.eta_low, 1e-8);
            EXPECT_REL_NEAR(from_geometry.eta_high, band.eta_high, 1e-8);
          }
      }
  }
  sgdstab::BandOptions o;
  o.momentum = 1.0;
  EXPECT_THROW(o.validate(), sgdstab::invalid_argument);
  o.momentum = -0.1;
  EXPECT_THROW(o.validate(), sgdstab::invalid_argument);
}
