#pragma once
#include <optional>

#include "sgdstab/momentum.hpp"
// Inputs shared by the commands that read a Jacobian or a Gram: the geometry,
// the reduction and solver options, the batch size, the direction file.
#include <Eigen/Core>
#include <chrono>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "args.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::cli {

using json = nlohmann::ordered_json;

/// --rank-tol and --space.
/// --memory-limit MIB in bytes (0: what the system has).
double memory_limit_option(const Args& args);
ReductionOptions reduction_options(const Args& args);
/// --outputs C (>= 1, default 1).
Index outputs_option(const Args& args);
/// The geometry of --jacobian FILE or --gram FILE (exactly one) with --outputs,
/// transformed by --curvature FILE or --softmax FILE (per-sample loss
/// curvature S_i: J -> S^{1/2} J, K -> S^{1/2} K S^{1/2}) and by
/// --preconditioner FILE (J -> J P^{-1/2}; a Gram must come with it folded in).
Geometry load_geometry(const Args& args);
/// The Jacobian of --jacobian FILE with the transforms of load_geometry.
Eigen::MatrixXd load_jacobian(const Args& args);
/// What load_geometry applied, for the JSON: "loss_curvature" (square,
/// softmax or matrix, with its file), "preconditioner" (the file) when given.
void echo_input_transforms(const Args& args, json& j);

/// --optimizer sgd|rmsprop|adam|adamw (default sgd) with its momentum:
/// heavy-ball --momentum for sgd and rmsprop (theory/adaptive.md: RMSProp's
/// momentum buffer is heavy-ball's in preconditioned coordinates), Adam's
/// beta1 (--momentum, default 0.9) for adam and adamw, solved as heavy-ball
/// at lr (1 - beta1). --weight-decay with adamw is AdamW's decoupled decay
/// (theory/adaptive.md, section 5); with rmsprop and adam it is their L2
/// decay through P^{-1} (section 6: needs --jacobian and --preconditioner,
/// threshold, curve, radius, region and montecarlo: refuse_adaptive_l2 elsewhere; not with rmsprop's
/// --momentum). Refuses --nesterov with the adaptive methods, and
/// --preconditioner with sgd.
struct OptimizerSetting {
  std::string name = "sgd";
  std::optional<Momentum> momentum;  ///< the heavy-ball map's (beta1 for Adam)
  bool adam = false;                 ///< answers in Adam's lr (adaptive.hpp)
  bool decoupled_weight_decay = false;  ///< adamw with --weight-decay: the adamw_* routines
  bool l2_adaptive = false;  ///< rmsprop or adam with --weight-decay: the adam_l2_* routines
  double beta1() const { return momentum ? momentum->beta : 0.0; }
};
OptimizerSetting optimizer_option(const Args& args);
/// A usage error naming `command` when o is Adam's or RMSProp's L2 decay
/// (available on threshold, curve, radius, region and montecarlo only).
void refuse_adaptive_l2(const OptimizerSetting& o, const std::string& command);
/// The inputs of an adaptive method's L2 decay (--jacobian and
/// --preconditioner required): the Jacobian with --softmax/--curvature
/// applied but not preconditioned, P's entries, C, the reduction options
/// and the geometry of J P^{-1/2} (for the JSON's geometry fields).
struct AdaptiveL2Input {
  Eigen::MatrixXd jacobian;
  Eigen::VectorXd preconditioner;
  Index outputs;
  ReductionOptions reduction;
  Geometry geometry;
};
AdaptiveL2Input adaptive_l2_input(const Args& args);
/// An Adam result's JSON: without eta_gd (GD's 2 / lambda_max is not Adam's
/// full-batch limit; that is eta_mean). Shared with the Python package.
void adam_fields(json& j);
/// echo_input_transforms, then "optimizer" (and "beta1" for Adam,
/// "preconditioner" null without the option) when --optimizer was given.
void echo_inputs(const Args& args, const OptimizerSetting& o, json& j);
/// --method, --tol, --ncv, --direction, validated.
SolverOptions solver_options(const Args& args);
/// --momentum BETA [--nesterov] (BETA in [0, 1), else UsageError); empty
/// without --momentum (--nesterov alone is a UsageError).
std::optional<Momentum> momentum_option(const Args& args);
/// --weight-decay LAMBDA (finite, >= 0, else UsageError); 0 without it.
/// With --momentum the buffer takes g + LAMBDA theta (theory/momentum.md, section 8).
double weight_decay_option(const Args& args);
/// The residuals of --NAME FILE as the sample-major vector of n C values:
/// a file of one column or one row as it is, an n x C file row by row
/// (sample i's C residuals in row i); any other shape is an error naming it.
Eigen::VectorXd residual_option(const Args& args, const std::string& name, Index rows, Index outputs);
/// --batch B, 1 <= B <= n.
Index batch_of(const Args& args, const Geometry& g);
/// Writes --direction FILE when given and a direction was computed.
void write_direction(const Args& args, const Eigen::MatrixXd& dir);
/// --seed S (an integer >= 0, else UsageError), or fallback when absent.
std::uint64_t seed_option(const Args& args, std::uint64_t fallback);
/// Seconds since t0.
double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace sgdstab::cli
