#include "inputs.hpp"

#include <cmath>
#include <string>

#include "foundations/check.hpp"
#include "option_table.hpp"
#include "sgdstab/matrix_io.hpp"
#include "sgdstab/sampling.hpp"

namespace sgdstab::cli {

double memory_limit_option(const Args& args) {
  // The solver's field (lib/foundations/options.cpp): MiB on the command line, its rule and message.
  SolverOptions so;
  apply_cli_field(args, option_field<SolverOptions>("memory_limit_bytes"), so);
  return so.memory_limit_bytes;
}

ReductionOptions reduction_options(const Args& args) {
  ReductionOptions ro;
  apply_cli(args, ro);  // the table's options (lib/geometry/reduction_options.cpp): --rank-tol, --space
  ro.memory_limit_bytes = memory_limit_option(args);
  return ro;
}

Index outputs_option(const Args& args) {
  const long long c = args.integer_or("outputs", 1);
  if (c < 1) throw UsageError("--outputs: C must be >= 1, got " + std::to_string(c));
  return static_cast<Index>(c);
}

Geometry load_geometry(const Args& args) {
  if (args.has("jacobian") == args.has("gram")) throw UsageError("give exactly one of --jacobian FILE or --gram FILE");
  const Index c = outputs_option(args);
  const ReductionOptions ro = reduction_options(args);
  if (args.has("jacobian")) return Geometry::from_jacobian(read_matrix(args.str("jacobian")), c, ro);
  return Geometry::from_gram(read_matrix(args.str("gram")), c, ro);
}

SolverOptions solver_options(const Args& args) {
  SolverOptions so;
  apply_cli(args, so);  // the table's options (lib/foundations/options.cpp): --method, --tol, --ncv, --max-restarts, ...
  so.want_direction = args.has("direction");
  so.validate();
  return so;
}

std::optional<Momentum> momentum_option(const Args& args) {
  if (!args.has("momentum")) {
    if (args.flag("nesterov")) throw UsageError("--nesterov needs --momentum BETA");
    return std::nullopt;
  }
  Momentum m;
  apply_cli(args, m);  // the table's options (lib/foundations/options.cpp): --momentum, --nesterov
  return m;
}

double weight_decay_option(const Args& args) {
  if (!args.has("weight-decay")) return 0.0;
  if (args.has("momentum"))
    throw UsageError("--weight-decay with --momentum is not available yet (plain SGD only, theory/weight_decay.md)");
  const double lambda = args.number("weight-decay");
  if (!(std::isfinite(lambda) && lambda >= 0.0))
    throw UsageError("--weight-decay: LAMBDA must be finite and >= 0, got " + detail::fmt(lambda));
  return lambda;
}

Index batch_of(const Args& args, const Geometry& g) {
  const Index b = static_cast<Index>(args.integer("batch"));
  check_batch(b, g.samples(), "--batch");
  return b;
}

void write_direction(const Args& args, const Eigen::MatrixXd& dir) {
  if (args.has("direction") && dir.size() > 0) {
    const std::string path = args.str("direction");
    write_matrix(path, dir);
  }
}

std::uint64_t seed_option(const Args& args, std::uint64_t fallback) {
  if (!args.has("seed")) return fallback;
  const long long seed = args.integer("seed");
  if (seed < 0) throw UsageError("--seed: expected an integer >= 0, got " + std::to_string(seed));
  return static_cast<std::uint64_t>(seed);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sgdstab::cli
