// The region's use of the shared-subspace solver (theory/region.md): the
// family M(s) of a Geometry (R applied on the CPU or the GPU, theory/gpu.md),
// its exact member at s = 0, the region's lists, and the assembly of a
// region from solved members (also sgdstab::mpi::region's).
#include "solvers/region_family.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "foundations/check.hpp"
#include "foundations/linalg.hpp"
#include "solvers/eigensolve.hpp"
#include "solvers/family.hpp"
#include "operators/cuda_backend.hpp"
#include "operators/low_precision.hpp"
#include "operators/operator_kernels.hpp"
#include "sgdstab/device.hpp"
#include "sgdstab/moment_operator.hpp"

namespace sgdstab {

using Eigen::MatrixXd;
using Eigen::VectorXd;

namespace {

// Whether the single-precision start runs (theory/region.md, section 7: on the CPU, where it pays).
bool mixed_start(const SolverOptions& opt, Device device, Index rank) {
  return device == Device::cpu && opt.mixed_precision && rank >= opt.mixed_precision_min_rank;
}

// The bytes geometry_family hands to family_top as its fixed workspace: the
// operator's scratch, and the single-precision factor when the mixed start runs.
double fixed_workspace_bytes(Index rows, Index rank, bool mixed) {
  return detail::moment_workspace_bytes(rows, rank) + (mixed ? detail::low_precision_pencil_bytes(rows, rank) : 0.0);
}

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

FamilyMember geometry_family_at_zero(const Geometry& g, const FamilyShift& shift) {
  const MatrixXd& z = g.factor();
  const Index n = g.samples(), c = g.outputs();
  double acc = 0.0;
  for (Index i = 0; i < n; ++i) {
    const double h = z.col(0).segment(i * c, c).squaredNorm();
    acc += h * h;
  }
  FamilyMember m = family_at_zero(g.hessian_eigenvalues(), acc, n);
  const double lam = shift.weight_decay;
  if (lam > 0.0) {  // s = 0 has c = 1: P' is largest at (0, 0), P'_00 = (d_0 + lambda) / 2
    const double d0 = g.hessian_eigenvalues()(0);
    const double sigma2 = 2.0 * d0 / (2.0 * d0 + 2.0 * lam), tau = (2.0 * lam * d0 + lam * lam) / (2.0 * d0 + 2.0 * lam);
    m.value = 0.5 * (d0 + lam);
    m.tangent_p = m.value;
    m.tangent_r = sigma2 * m.tangent_r + tau / shift.c;
    m.message = "exact: g(0) = (lambda_max(H) + weight decay) / 2";
  }
  return m;
}

FamilyResult geometry_family(const Geometry& g, const std::vector<double>& s, const SolverOptions& opt,
                             bool want_vectors, const FamilyShift& shift) {
  const VectorXd& d = g.hessian_eigenvalues();
  const SecondMomentOperator single(g, 1, Sampling::with_replacement);  // alpha = 0, beta = 1: Q = D
  const PencilOperator r_op(single);                                     // R = A^{-1/2} D A^{-1/2}
  std::string note;
  const Device device = resolve_device(opt.device, gpu_pencil_bytes(g), &note);  // theory/gpu.md
  ApplyFn apply = device == Device::cuda ? gpu_pencil_r(g)
                                         : ApplyFn([&r_op](const double* x, double* y) { r_op.perform_op(x, y); });
  const double lam = shift.weight_decay;
  VectorXd start = pack(MatrixXd((2.0 * (d.array() + lam)).sqrt().matrix().asDiagonal()));  // A^{1/2}(I): threshold.md §6
  start /= start.norm();
  // theory/region.md, section 7: single precision first, where it pays.
  const bool mixed = mixed_start(opt, device, g.rank());
  LowApplyFn low = mixed ? low_precision_pencil_r(g) : LowApplyFn();
  const double fixed = fixed_workspace_bytes(g.factor().rows(), g.rank(), mixed);
  VectorXd p = packed_p(d);
  if (lam > 0.0) {  // weight decay (theory/weight_decay.md, section 3): R' = sigma R sigma + tau / c, P' likewise
    const Index r = d.size(), m = packed_size(r);
    auto sigma = std::make_shared<VectorXd>(m);
    auto shifted = std::make_shared<VectorXd>(m);  // tau / c
    Index idx = 0;
    for (Index l = 0; l < r; ++l)
      for (Index k = l; k < r; ++k, ++idx) {
        const double sum = d(k) + d(l), denom = sum + 2.0 * lam;
        (*sigma)(idx) = std::sqrt(sum / denom);
        (*shifted)(idx) = (lam * sum + lam * lam) / denom / shift.c;
      }
    p = sigma->cwiseAbs2().cwiseProduct(p) + *shifted;
    auto scratch = std::make_shared<VectorXd>(m);
    apply = [inner = std::move(apply), sigma, shifted, scratch](const double* x, double* y) {
      const Eigen::Map<const VectorXd> xv(x, sigma->size());
      *scratch = sigma->cwiseProduct(xv);
      inner(scratch->data(), y);
      Eigen::Map<VectorXd> yv(y, sigma->size());
      yv = sigma->cwiseProduct(yv) + shifted->cwiseProduct(xv);
    };
    if (low) {
      auto sigma_f = std::make_shared<Eigen::VectorXf>(sigma->cast<float>());
      auto shifted_f = std::make_shared<Eigen::VectorXf>(shifted->cast<float>());
      auto scratch_f = std::make_shared<Eigen::VectorXf>(m);
      low = [inner = std::move(low), sigma_f, shifted_f, scratch_f](const float* x, float* y) {
        const Eigen::Map<const Eigen::VectorXf> xv(x, sigma_f->size());
        *scratch_f = sigma_f->cwiseProduct(xv);
        inner(scratch_f->data(), y);
        Eigen::Map<Eigen::VectorXf> yv(y, sigma_f->size());
        yv = sigma_f->cwiseProduct(yv) + shifted_f->cwiseProduct(xv);
      };
    }
  }
  FamilyResult out = family_top(p, apply, s, start, opt, fixed,
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
  p.report.status = m.status;
  p.report.method = m.method;
  p.report.matvecs = m.matvecs;
  p.report.residual = m.value > 0 ? m.residual / m.value : m.residual;
  p.report.message = m.message;
  if (m.value > 0 && std::isfinite(m.value)) {
    p.eta_star = p.eta_high = 1.0 / (c * m.value);
    p.eta_low = 1.0 / (c * (m.value + m.error));
  } else if (p.converged()) {
    p.report.status = Status::numerical_failure;
    p.report.message = "the pencil's largest eigenvalue is not positive";
  }
  return p;
}

}  // namespace

void set_region_seconds(StabilityRegion& out, double seconds) {
  out.report.seconds = seconds;
  for (RegionCurve& c : out.curves)
    for (RegionPoint& p : c.points) p.report.seconds = seconds;
}

void assemble_region(StabilityRegion& out, const std::vector<FamilyMember>& members,
                     const std::vector<Sampling>& schemes, const std::vector<Index>& batches) {
  for (const FamilyMember& m : members) {  // theory/region.md, section 6
    out.tangents.push_back({m.tangent_p, m.tangent_r});
    if (m.status != Status::numerical_failure && m.value > 0) out.knots.push_back({m.s, m.value + m.error});
  }
  std::sort(out.knots.begin(), out.knots.end(), [](const RegionKnot& a, const RegionKnot& b) { return a.s < b.s; });
  out.report.status = Status::converged;
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
        out.report.status = p.status();
        out.report.message = to_string(sc) + ", B = " + std::to_string(b) + ": " + p.report.message;
      }
    }
    out.curves.push_back(std::move(curve));
  }
}

}  // namespace detail

namespace {

// exact_region_min_bytes for a device already resolved (cpu, or cuda: no
// mixed start): what geometry_family and family_top check before they
// allocate (theory/region.md, sections 5 and 7), through the same helpers.
double region_min_bytes(Index rows, Index rank, const SolverOptions& opt, Device device) {
  detail::require(rows >= 0 && rank >= 0 && rank <= rows, "exact_region_min_bytes",
                  "expected 0 <= rank <= rows, got rows = " + std::to_string(rows) + ", rank = " + std::to_string(rank));
  const Index m = packed_size(rank);
  const double fixed = fixed_workspace_bytes(rows, rank, mixed_start(opt, device, rank));
  if (detail::resolve_method(opt, m) == Method::dense) return fixed + detail::dense_bytes(m);
  return fixed + detail::family_bytes(m, detail::family_min_subspace(m, opt));
}

}  // namespace

double exact_region_min_bytes(Index rows, Index rank, const SolverOptions& opt) {
  opt.validate();
  return region_min_bytes(rows, rank, opt, opt.device == Device::cuda ? Device::cuda : Device::cpu);
}

double exact_region_min_bytes(const Geometry& g, const SolverOptions& opt) {
  opt.validate();
  // The device as geometry_family resolves it (automatic: cuda where a usable GPU has room).
  const Device device = resolve_device(opt.device, detail::gpu_pencil_bytes(g));
  return region_min_bytes(g.factor().rows(), g.rank(), opt, device);
}

}  // namespace sgdstab
