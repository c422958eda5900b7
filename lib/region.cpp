// The stability region: theory/region.md.
#include "sgdstab/region.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "check.hpp"
#include "cuda_backend.hpp"
#include "family.hpp"
#include "low_precision.hpp"
#include "sgdstab/device.hpp"
#include "scaling.hpp"
#include "sgdstab/errors.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

std::pair<double, double> region_coordinates(Sampling sampling, Index samples, double batch) {
  const double nd = static_cast<double>(samples), Bd = batch;
  detail::require(samples >= 1 && std::isfinite(batch) && batch >= 1.0 && batch <= nd, "region_coordinates",
                  "batch size B must satisfy 1 <= B <= n = " + std::to_string(samples) + ", got B = " +
                      detail::fmt(batch));
  double alpha = 1.0, beta = 0.0;
  switch (sampling) {  // sampling.hpp's table at real B (theory/region.md, section 2)
    case Sampling::without_replacement:
      if (Bd == nd) break;
      alpha = nd * (Bd - 1.0) / (Bd * (nd - 1.0));
      beta = (nd - Bd) / (Bd * (nd - 1.0));
      break;
    case Sampling::with_replacement:
      alpha = (Bd - 1.0) / Bd;
      beta = 1.0 / Bd;
      break;
    case Sampling::bernoulli:
      beta = (nd - Bd) / (nd * Bd);
      break;
  }
  const double c = alpha + beta;
  return {c, beta / c};
}

EtaInterval StabilityRegion::g_bounds(double s) const {
  detail::require(momentum.beta == 0.0, "StabilityRegion::g_bounds",
                  "a momentum region has no pencil g(s) (theory/momentum.md, section 7); use band()");
  detail::require(s >= 0.0 && s <= 1.0, "StabilityRegion::g_bounds", "s must lie in [0, 1], got " + detail::fmt(s));
  EtaInterval out{0.0, std::numeric_limits<double>::infinity()};
  for (const RegionTangent& t : tangents) out.low = std::max(out.low, (1.0 - s) * t.p + s * t.r);
  for (std::size_t j = 0; j < knots.size(); ++j) {
    if (knots[j].s == s) out.high = std::min(out.high, knots[j].upper);
    if (j + 1 < knots.size() && knots[j].s < s && s < knots[j + 1].s) {
      const double w = (s - knots[j].s) / (knots[j + 1].s - knots[j].s);
      out.high = std::min(out.high, (1.0 - w) * knots[j].upper + w * knots[j + 1].upper);
    }
  }
  out.high = std::max(out.high, out.low);
  return out;
}

EtaInterval StabilityRegion::band(Sampling sampling, double batch) const {
  if (momentum.beta > 0.0) {
    // theory/momentum.md, section 7: eta*(B) is non-decreasing in B for each
    // scheme (kappa = b(B) kappa_0, b decreasing), so the nearest computed
    // points on either side bound it; eta_mean bounds it from above.
    detail::require(batch >= 1.0 && batch <= static_cast<double>(samples), "StabilityRegion::band",
                    "batch must satisfy 1 <= B <= n = " + std::to_string(samples) + ", got " + detail::fmt(batch));
    const auto curve = std::find_if(curves.begin(), curves.end(), [&](const RegionCurve& c) { return c.sampling == sampling; });
    detail::require(curve != curves.end(), "StabilityRegion::band", "no curve for scheme '" + to_string(sampling) + "'");
    EtaInterval out{0.0, eta_mean};
    for (const RegionPoint& p : curve->points) {
      if (!p.converged()) continue;
      if (static_cast<double>(p.batch) <= batch) out.low = std::max(out.low, p.eta_low);
      if (static_cast<double>(p.batch) >= batch) out.high = std::min(out.high, p.eta_high);
    }
    return out;
  }
  const auto [c, s] = region_coordinates(sampling, samples, batch);
  const EtaInterval gb = g_bounds(s);
  EtaInterval out;
  out.low = std::isfinite(gb.high) ? 1.0 / (c * gb.high) : 0.0;
  out.high = gb.low > 0 ? 1.0 / (c * gb.low) : std::numeric_limits<double>::infinity();
  return out;
}

namespace {

// Diagonal of P in packed order: d_k d_l / (d_k + d_l).
VectorXd packed_p(const VectorXd& d) {
  const Index r = d.size();
  VectorXd p(packed_size(r));
  Index idx = 0;
  for (Index l = 0; l < r; ++l)
    for (Index k = l; k < r; ++k) p(idx++) = d(k) * d(l) / (d(k) + d(l));
  return p;
}

// g(0) = d_0 / 2 at e_00, and its tangent e_00' R e_00 = (1/n) sum_i (h_i)_00^2 / (2 d_0)
// with (h_i)_00 = |Z_i e_0|^2 (theory/region.md, section 6).
}  // namespace

namespace detail {

FamilyMember family_at_zero(const VectorXd& d, double sum_h00_squared, Index n) {
  FamilyMember m;
  m.s = 0.0;
  m.value = 0.5 * d(0);
  m.tangent_p = 0.5 * d(0);
  m.tangent_r = sum_h00_squared / static_cast<double>(n) / (2.0 * d(0));
  m.status = Status::converged;
  m.method = Method::dense;
  m.message = "exact: g(0) = lambda_max(H) / 2";
  m.vector = VectorXd::Zero(packed_size(d.size()));
  m.vector(0) = 1.0;  // E_00 (packed order starts with the (0, 0) entry)
  return m;
}

FamilyMember geometry_family_at_zero(const Geometry& g) {
  const MatrixXd& z = g.factor();
  const Index n = g.samples(), c = g.outputs();
  double acc = 0.0;
  for (Index i = 0; i < n; ++i) {
    const double h = z.col(0).segment(i * c, c).squaredNorm();
    acc += h * h;
  }
  return family_at_zero(g.hessian_eigenvalues(), acc, n);
}

FamilyResult geometry_family(const Geometry& g, const std::vector<double>& s, const SolverOptions& opt,
                             bool want_vectors) {
  const VectorXd& d = g.hessian_eigenvalues();
  const SecondMomentOperator single(g, 1, Sampling::with_replacement);  // alpha = 0, beta = 1: Q = D
  const PencilOperator r_op(single);                                     // R = A^{-1/2} D A^{-1/2}
  std::string note;
  const Device device = resolve_device(opt.device, gpu_pencil_bytes(g), &note);  // theory/gpu.md
  const ApplyFn apply = device == Device::cuda
                            ? gpu_pencil_r(g)
                            : ApplyFn([&r_op](const double* x, double* y) { r_op.perform_op(x, y); });
  VectorXd start = pack(MatrixXd((2.0 * d).cwiseSqrt().asDiagonal()));  // A^{1/2}(I): threshold.md §6
  start /= start.norm();
  // theory/region.md, section 7: single precision first, where it pays.
  const bool mixed = device == Device::cpu && opt.mixed_precision && g.rank() >= opt.mixed_precision_min_rank;
  const LowApplyFn low = mixed ? low_precision_pencil_r(g) : LowApplyFn();
  const double fixed = single.workspace_bytes() + (mixed ? low_precision_pencil_bytes(g) : 0.0);
  FamilyResult out = family_top(packed_p(d), apply, s, start, opt, fixed,
                                "eta* (m = " + std::to_string(packed_size(g.rank())) + ")", want_vectors, low);
  out.device = device;
  out.device_note = note;
  return out;
}

}  // namespace detail

void detail::check_region_lists(const std::vector<Sampling>& schemes, const std::vector<Index>& batches, Index n) {
  const std::string where = "stability_region";
  detail::require(!schemes.empty(), where, "the list of sampling schemes is empty");
  detail::require(!batches.empty(), where, "the list of batch sizes is empty");
  for (std::size_t i = 0; i < schemes.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      detail::require(schemes[i] != schemes[j], where, "sampling scheme '" + to_string(schemes[i]) + "' is repeated");
  for (std::size_t i = 0; i < batches.size(); ++i) {
    check_batch(batches[i], n, where);
    for (std::size_t j = 0; j < i; ++j)
      detail::require(batches[i] != batches[j], where, "batch size " + std::to_string(batches[i]) + " is repeated");
  }
}

namespace detail {

// The distinct s > 0 of all points (theory/region.md, section 2).
std::vector<double> region_s_values(const std::vector<Sampling>& schemes, const std::vector<Index>& batches, Index n) {
  std::vector<double> out;
  for (Sampling sc : schemes)
    for (Index b : batches) {
      const double s = region_coordinates(sc, n, static_cast<double>(b)).second;
      if (s > 0 && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
  return out;
}

namespace {

// eta*(B) = 1 / (c g(s)) with its certified interval (theory/region.md, section 4).
RegionPoint region_point(const FamilyMember& m, double c, double s, Index batch) {
  RegionPoint p;
  p.batch = batch;
  p.s = s;
  p.status = m.status;
  p.method = m.method;
  p.matvecs = m.matvecs;
  p.residual = m.value > 0 ? m.residual / m.value : m.residual;
  p.message = m.message;
  if (m.value > 0 && std::isfinite(m.value)) {
    p.eta_star = p.eta_high = 1.0 / (c * m.value);
    p.eta_low = 1.0 / (c * (m.value + m.error));
  } else if (p.converged()) {
    p.status = Status::numerical_failure;
    p.message = "the pencil's largest eigenvalue is not positive";
  }
  return p;
}

}  // namespace

void assemble_region(StabilityRegion& out, const std::vector<FamilyMember>& members,
                     const std::vector<Sampling>& schemes, const std::vector<Index>& batches) {
  for (const FamilyMember& m : members) {  // theory/region.md, section 6
    out.tangents.push_back({m.tangent_p, m.tangent_r});
    if (m.status != Status::numerical_failure && m.value > 0) out.knots.push_back({m.s, m.value + m.error});
  }
  std::sort(out.knots.begin(), out.knots.end(), [](const RegionKnot& a, const RegionKnot& b) { return a.s < b.s; });
  out.status = Status::converged;
  for (Sampling sc : schemes) {
    RegionCurve curve{sc, {}};
    for (Index b : batches) {
      const auto [c, s] = region_coordinates(sc, out.samples, static_cast<double>(b));
      const auto it =
          std::find_if(members.begin(), members.end(), [s = s](const FamilyMember& m) { return m.s == s; });
      if (it == members.end()) throw std::logic_error("assemble_region: no member for s = " + detail::fmt(s));
      curve.points.push_back(region_point(*it, c, s, b));
      const RegionPoint& p = curve.points.back();
      if (!p.converged() && out.converged()) {
        out.status = p.status;
        out.message = to_string(sc) + ", B = " + std::to_string(b) + ": " + p.message;
      }
    }
    out.curves.push_back(std::move(curve));
  }
}

}  // namespace detail

StabilityRegion stability_region(const Geometry& g, const std::vector<Sampling>& schemes,
                                 const std::vector<Index>& batches, const SolverOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  opt.validate();
  detail::check_region_lists(schemes, batches, g.samples());
  detail::require_device(opt);
  const detail::UnitGeometry u(g);
  if (u.rescaled()) {  // computed in rescaled units, reported in the user's (theory/scaling.md)
    StabilityRegion out = stability_region(u.get(), schemes, batches, opt);
    const double unit = u.unit();
    out.lambda_max = g.lambda_max();
    out.eta_gd = 2.0 / g.lambda_max();
    out.eta_mean = out.eta_gd;
    for (RegionCurve& c : out.curves)
      for (RegionPoint& p : c.points) {
        p.eta_star /= unit;
        p.eta_low /= unit;
        p.eta_high /= unit;
      }
    for (RegionTangent& t : out.tangents) {
      t.p *= unit;
      t.r *= unit;
    }
    for (RegionKnot& k : out.knots) k.upper *= unit;
    return out;
  }
  StabilityRegion out;
  out.samples = g.samples();
  out.outputs = g.outputs();
  out.rank = g.rank();
  out.lambda_max = g.hessian_eigenvalues()(0);
  out.eta_gd = 2.0 / out.lambda_max;
  out.eta_mean = out.eta_gd;

  const std::vector<double> svals = detail::region_s_values(schemes, batches, g.samples());
  detail::FamilyResult fam;
  if (!svals.empty()) fam = detail::geometry_family(g, svals, opt);
  fam.members.push_back(detail::geometry_family_at_zero(g));
  out.matvecs = fam.matvecs;
  out.single_precision_matvecs = fam.low_precision_matvecs;
  out.apply_seconds = fam.apply_seconds;
  out.restarts = fam.restarts;
  out.subspace_dimension = fam.subspace_dimension;
  out.method = svals.empty() ? Method::dense : fam.method;
  out.device = fam.device;
  detail::assemble_region(out, fam.members, schemes, batches);
  if (out.converged()) out.message = "converged";
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace sgdstab
