// eta*, rho and the region over MPI: the distributed operator's top
// eigenvalue turned into the serial results (theory/distributed.md).
#include "sgdstab/distributed.hpp"

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "distributed/comm.hpp"
#include "distributed/operator.hpp"
#include "foundations/check.hpp"
#include "sgdstab/errors.hpp"
#include "solvers/family.hpp"
#include "solvers/region_family.hpp"

namespace sgdstab::mpi {

using internal::agree;
using internal::check_memory_per_rank;
using internal::comm_size;
using internal::DistributedOperator;
using internal::slepc_top;
using internal::TopValue;

Timed<ThresholdResult> threshold(MPI_Comm comm, const DistributedGeometry& g, Index batch, Sampling sampling,
                                 const SolverOptions& o) {
  const double t0 = internal::wall();
  agree(comm, [&] {
    o.validate();
    check_batch(batch, g.samples, "sgdstab::mpi::threshold");
  });
  check_memory_per_rank(comm, g, o);
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples, batch), /*pencil=*/true, 0.0);
  const TopValue top = slepc_top(comm, op, o);
  Timed<ThresholdResult> res;
  res.batch = batch;
  res.sampling = sampling;
  res.report = top.report;
  res.pencil_max = top.value;
  if (res.converged()) {
    if (top.value > 0.0) {
      res.eta_star = 1.0 / top.value;
    } else {
      res.report.status = Status::numerical_failure;
      res.report.message = "the pencil's largest eigenvalue is not positive";
    }
  }
  res.times = op.times();
  res.report.apply_seconds = res.times.total_seconds();
  res.report.seconds = internal::wall() - t0;
  return res;
}

Timed<ThresholdResult> threshold(MPI_Comm comm, const Geometry& g, Index batch, Sampling sampling,
                                 const SolverOptions& o) {
  return threshold(comm, distribute(comm, g), batch, sampling, o);
}

Timed<RadiusResult> radius(MPI_Comm comm, const DistributedGeometry& g, double lr, Index batch, Sampling sampling,
                           const SolverOptions& o) {
  const double t0 = internal::wall();
  agree(comm, [&] {
    o.validate();
    detail::require(std::isfinite(lr) && lr > 0.0, "sgdstab::mpi::radius",
                    "learning rate must be finite and > 0, got " + detail::fmt(lr));
    check_batch(batch, g.samples, "sgdstab::mpi::radius");
  });
  check_memory_per_rank(comm, g, o);
  DistributedOperator op(comm, g, sampling_factors(sampling, g.samples, batch), /*pencil=*/false, lr);
  const TopValue top = slepc_top(comm, op, o);
  Timed<RadiusResult> res;
  res.lr = lr;
  res.batch = batch;
  res.sampling = sampling;
  res.report = top.report;
  res.report.error_bound = std::numeric_limits<double>::quiet_NaN();
  res.rho = top.value;  // T is a positive map: its spectral radius is its largest eigenvalue
  res.times = op.times();
  res.report.apply_seconds = res.times.total_seconds();
  res.report.seconds = internal::wall() - t0;
  return res;
}

Timed<RadiusResult> radius(MPI_Comm comm, const Geometry& g, double lr, Index batch, Sampling sampling,
                           const SolverOptions& o) {
  return radius(comm, distribute(comm, g), lr, batch, sampling, o);
}

Timed<StabilityRegion> region(MPI_Comm comm, const DistributedGeometry& g, const std::vector<Sampling>& schemes,
                              const std::vector<Index>& batches, const SolverOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  agree(comm, [&] {
    o.validate();
    detail::check_region_lists(schemes, batches, g.samples);
  });
  check_memory_per_rank(comm, g, o);
  Timed<StabilityRegion> out;
  out.samples = g.samples;
  out.outputs = g.outputs;
  out.rank = g.rank();
  out.lambda_max = g.lambda_max();
  out.eta_gd = out.eta_mean = 2.0 / g.lambda_max();
  out.report.method = Method::lanczos;
  // g(s) once per distinct s (theory/region.md, section 2), g(0) exactly.
  std::vector<detail::FamilyMember> members;
  for (const double s : detail::region_s_values(schemes, batches, g.samples)) {
    DistributedOperator op(comm, g, SamplingFactors{1.0 - s, s}, /*pencil=*/true, 0.0);
    const TopValue top = slepc_top(comm, op, o);
    out.times += op.times();
    out.report.matvecs += top.report.matvecs;
    out.report.iterations += top.report.iterations;
    detail::FamilyMember m;
    m.s = s;
    m.value = top.value;
    m.error = top.value * top.report.residual;  // a symmetric operator: the residual bounds the distance
    m.residual = top.value * top.report.residual;
    if (top.report.converged() && top.value > 0.0) {
      // The Rayleigh quotient's line (1 - t) v'Pv + t v'Rv lies below g (theory/region.md, section 6).
      m.tangent_p = top.vpv;
      m.tangent_r = (top.value - (1.0 - s) * top.vpv) / s;
    }
    m.status = top.report.status;
    m.method = Method::lanczos;
    m.matvecs = top.report.matvecs;
    m.message = top.report.message;
    members.push_back(std::move(m));
  }
  double h00 = 0.0;  // sum over this rank's samples of |Z_i e_0|^4
  for (Index i = 0; i < g.slice.count; ++i) {
    const double h = g.factor_rows.col(0).segment(i * g.outputs, g.outputs).squaredNorm();
    h00 += h * h;
  }
  MPI_Allreduce(MPI_IN_PLACE, &h00, 1, MPI_DOUBLE, MPI_SUM, comm);
  members.push_back(detail::family_at_zero(g.hessian_eigenvalues, h00, g.samples));
  detail::assemble_region(out, members, schemes, batches);
  if (out.converged())
    out.report.message = "converged (SLEPc Krylov-Schur on " + std::to_string(comm_size(comm)) + " ranks)";
  out.report.apply_seconds = out.times.total_seconds();
  detail::set_region_seconds(out, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

Timed<StabilityRegion> region(MPI_Comm comm, const Geometry& g, const std::vector<Sampling>& schemes,
                              const std::vector<Index>& batches, const SolverOptions& o) {
  return region(comm, distribute(comm, g), schemes, batches, o);
}

}  // namespace sgdstab::mpi
