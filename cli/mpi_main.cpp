// sgdstab-mpi: `threshold`, `radius` and `region` on SLEPc/PETSc over MPI (issue #17,
// theory/distributed.md), with sgdstab's options, checks and JSON:
//   mpirun -np P sgdstab-mpi threshold --gram FILE --outputs C --batch B
// Every rank parses the same arguments and reads its rows of the input;
// errors found on one rank are shared (the same error everywhere, so no rank
// waits on one that stopped); only rank 0 writes stdout and stderr. An error inside the distributed solve ends every
// rank (MPI_Abort) rather than leave the others waiting.
#include <mpi.h>
#include <slepcsys.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "app.hpp"
#include "commands.hpp"
#include "foundations/check.hpp"
#include "inputs.hpp"
#include "problem.hpp"
#include "report.hpp"
#include "results.hpp"
#include "sgdstab/distributed.hpp"
#include "sgdstab/errors.hpp"
#include "signals.hpp"

namespace sgdstab::cli {
namespace {

int ranks() {
  int p = 1;
  MPI_Comm_size(PETSC_COMM_WORLD, &p);
  return p;
}

void plain_sgd_only(const Args& args) {
  for (const char* name : {"momentum", "nesterov", "scan", "weight-decay", "optimizer", "preconditioner"})
    if (args.has(name)) throw UsageError(std::string("--") + name + ": sgdstab-mpi computes plain SGD only (for now)");
  for (const char* name : {"curvature", "softmax"})
    if (args.has(name)) throw UsageError(std::string("--") + name + ": sgdstab-mpi reads square-loss inputs only (for now)");
  if (args.has("direction")) throw UsageError("--direction: not available in sgdstab-mpi");
  if (args.has("device") && args.str("device") != "cpu" && args.str("device") != "auto")
    throw UsageError("--device " + args.str("device") + ": sgdstab-mpi runs on the CPUs of its ranks");
}

// The input read once over the ranks (each its rows) and reduced by
// ScaLAPACK (sgdstab::mpi::reduce_gram); a Jacobian becomes its Gram rows first.
mpi::DistributedGeometry load_distributed(const Args& args) {
  if (args.has("jacobian") == args.has("gram")) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
  const Index c = outputs_option(args);
  ReductionOptions ro = reduction_options(args);
  if (ro.space == Space::parameter)
    throw UsageError("--space parameter: sgdstab-mpi reduces in sample space (the Gram) only");
  ro.space = Space::automatic;
  const MPI_Comm comm = PETSC_COMM_WORLD;
  if (args.has("gram")) return mpi::reduce_gram(comm, mpi::read_rows(comm, args.str("gram"), c), c, ro);
  const Eigen::MatrixXd jrows = mpi::read_rows(comm, args.str("jacobian"), c);
  long long p = jrows.cols();
  MPI_Allreduce(MPI_IN_PLACE, &p, 1, MPI_LONG_LONG, MPI_MAX, comm);
  mpi::DistributedGeometry g = mpi::reduce_gram(comm, mpi::gram_rows_of_jacobian(comm, jrows, c), c, ro);
  g.params = static_cast<Index>(p);
  return g;
}

GeometrySummary summary(const mpi::DistributedGeometry& g) {
  GeometrySummary s;
  s.samples = g.samples;
  s.outputs = g.outputs;
  s.params = g.params;
  s.rank = g.rank();
  s.lambda_max = g.lambda_max();
  s.hessian_frobenius = g.hessian_frobenius();
  s.hessian_trace = g.hessian_trace();
  s.space = Space::sample;
  return s;
}

// Where the applications' time went on rank 0 (theory/distributed.md, section 6).
void times_fields(json& j, const mpi::ApplicationTimes& t) {
  j["application_seconds"] = t.total_seconds();
  j["communication_seconds"] = t.communication_seconds;
  j["product_seconds"] = t.product_seconds;
  j["elementwise_seconds"] = t.elementwise_seconds;
}

// ranks, the reduction's time and where the applications' time went (rank 0's view).
void distributed_fields(json& j, const mpi::DistributedGeometry& g, const mpi::ApplicationTimes& t) {
  j["ranks"] = ranks();
  j["reduction_seconds"] = g.reduction_seconds;
  times_fields(j, t);
}

Index batch_in(const Args& args, const mpi::DistributedGeometry& g) {
  const Index b = static_cast<Index>(args.integer("batch"));
  check_batch(b, g.samples, "--batch");
  return b;
}

int cmd_threshold_mpi(const Args& args, std::ostream& out, std::ostream& err) {
  plain_sgd_only(args);
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const mpi::DistributedGeometry g = load_distributed(args);
  const Index b = batch_in(args, g);
  const mpi::Timed<ThresholdResult> r = mpi::threshold(PETSC_COMM_WORLD, g, b, sampling, so);
  json j = with_options(threshold_json(summary(g), r), so);
  distributed_fields(j, g, r.times);
  return finish(j, r.status(), out, err);
}

int cmd_radius_mpi(const Args& args, std::ostream& out, std::ostream& err) {
  plain_sgd_only(args);
  const Sampling sampling = args.choice("sampling", Sampling::without_replacement);
  SolverOptions so = solver_options(args);
  so.want_direction = false;
  const double lr = args.number("lr");
  if (!(lr > 0)) throw sgdstab::invalid_argument("--lr: the learning rate must be > 0, got " + detail::fmt(lr));
  const mpi::DistributedGeometry g = load_distributed(args);
  const Index b = batch_in(args, g);
  const mpi::Timed<RadiusResult> r = mpi::radius(PETSC_COMM_WORLD, g, lr, b, sampling, so);
  json j = with_options(radius_json(summary(g), r), so);
  distributed_fields(j, g, r.times);
  return finish(j, r.status(), out, err);
}

int cmd_region_mpi(const Args& args, std::ostream& out, std::ostream& err) {
  plain_sgd_only(args);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Sampling> schemes = region_schemes_option(args);
  const std::vector<Mark> marks = region_marks_option(args);
  const SolverOptions so = solver_options(args);
  const mpi::DistributedGeometry g = load_distributed(args);
  const std::vector<Index> batches = batches_option(args, g.samples);
  for (const Mark& m : marks) check_batch(m.batch, g.samples, "--mark");
  int rank = 0;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  const MarkRadius radius = [&](double lr, Index b, Sampling s) {
    return mpi::radius(PETSC_COMM_WORLD, g, lr, b, s, so);
  };
  mpi::Timed<StabilityRegion> region = mpi::region(PETSC_COMM_WORLD, g, schemes, batches, so);
  const mpi::ApplicationTimes times = region.times;
  // The picture by rank 0 alone, without the bounds (they need the whole geometry).
  const std::string plot = rank == 0 ? args.str_or("plot", "") : std::string();
  RegionReport rep = region_report_of(std::move(static_cast<StabilityRegion&>(region)), nullptr, marks, plot, so, radius);
  rep.j["seconds"] = seconds_since(t0);
  rep.j["ranks"] = ranks();
  rep.j["reduction_seconds"] = g.reduction_seconds;
  times_fields(rep.j, times);
  return finish(rep.j, rep.status, out, err);
}

}  // namespace
}  // namespace sgdstab::cli

int main(int argc, char** argv) {
  sgdstab::cli::install_signal_handlers();  // records which signals were inherited as ignored
  // PETSc must not read our options: initialize it with the program name only.
  int petsc_argc = 1;
  char** petsc_argv = argv;
  if (SlepcInitialize(&petsc_argc, &petsc_argv, nullptr, nullptr) != 0) {
    std::cerr << "sgdstab-mpi: SLEPc/PETSc/MPI initialization failed\n";
    return 1;
  }
  int rank = 0;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  sgdstab::cli::install_signal_handlers();  // again: PETSc installs handlers of its own
  std::ostringstream out, err;
  const int code = sgdstab::cli::run_subset(argc, argv, out, err,
                                            {{"threshold", sgdstab::cli::cmd_threshold_mpi},
                                             {"radius", sgdstab::cli::cmd_radius_mpi},
                                             {"region", sgdstab::cli::cmd_region_mpi}});
  // Every rank computed the same answer (or failed the same way): rank 0 speaks.
  int worst = code;
  MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, PETSC_COMM_WORLD);
  if (rank == 0) {
    std::cout << out.str();
    std::cerr << err.str();
  }
  SlepcFinalize();
  return rank == 0 ? code : worst;
}
