#pragma once
#include <optional>

#include "sgdstab/momentum.hpp"
// Inputs shared by the commands that read a Jacobian or a Gram: the geometry,
// the reduction and solver options, the batch size, the direction file.
#include <Eigen/Core>
#include <chrono>
#include <cstdint>

#include "args.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::cli {

/// --rank-tol and --space.
/// --memory-limit MIB in bytes (0: what the system has).
double memory_limit_option(const Args& args);
ReductionOptions reduction_options(const Args& args);
/// --outputs C (>= 1, default 1).
Index outputs_option(const Args& args);
/// The geometry of --jacobian FILE or --gram FILE (exactly one) with --outputs.
Geometry load_geometry(const Args& args);
/// --method, --tol, --ncv, --direction, validated.
SolverOptions solver_options(const Args& args);
/// --momentum BETA [--nesterov] (BETA in [0, 1), else UsageError); empty
/// without --momentum (--nesterov alone is a UsageError).
std::optional<Momentum> momentum_option(const Args& args);
/// --weight-decay LAMBDA (finite, >= 0, else UsageError); 0 without it.
/// With --momentum it is a UsageError (plain SGD only for now).
double weight_decay_option(const Args& args);
/// --batch B, 1 <= B <= n.
Index batch_of(const Args& args, const Geometry& g);
/// Writes --direction FILE when given and a direction was computed.
void write_direction(const Args& args, const Eigen::MatrixXd& dir);
/// --seed S (an integer >= 0, else UsageError), or fallback when absent.
std::uint64_t seed_option(const Args& args, std::uint64_t fallback);
/// Seconds since t0.
double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace sgdstab::cli
