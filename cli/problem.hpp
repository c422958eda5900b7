#pragma once
// Building a model + data set + minimum from the command line
// (`sgdstab minimum` and `sgdstab analyze`).
#include <nlohmann/json.hpp>
#include <functional>
#include <iosfwd>
#include <set>
#include <string>

#include "args.hpp"
#include "sgdstab/bounds.hpp"
#include "sgdstab/data.hpp"
#include "sgdstab/minimize.hpp"
#include "sgdstab/mlp.hpp"

namespace sgdstab::cli {

struct Problem {
  Dataset data;
  Mlp model;
  std::uint64_t seed = 0;  ///< --seed: initialization (and data, batches)
  std::string alignment_log;  ///< path written by --alignment-log, if any
  /// The trainer's options in effect (MinimizeOptions' or TrainOptions' table), set by reach_minimum.
  nlohmann::ordered_json trainer_options;
};

/// The data set named by --data and the model named by --model/--widths/...,
/// initialized from --seed. \throws UsageError / sgdstab::invalid_argument.
Problem build_problem(const Args& args);

/// Runs the trainer named by --trainer (default: min-norm for models linear
/// in theta, gauss-newton otherwise) from the model's initialization.
MinimizeResult reach_minimum(const Args& args, Problem& problem);
/// The trainer --trainer names, or the default for the model (min-norm when
/// only the last layer trains, gauss-newton otherwise).
std::string trainer_name(const Args& args, const MlpSpec& spec);

/// --batches B1,B2,... checked against 1 <= B <= samples; the default curve
/// (powers of two below n, and n) when absent.
std::vector<Index> batches_option(const Args& args, Index samples);

/// Writes --save-jacobian / --save-gram / --save-params (npy or csv by the
/// extension, atomically) and records the paths in j["files"].
void save_requested(const Args& args, const Problem& problem, nlohmann::ordered_json& j);

/// Progress on stderr ("what done/total (t s)") for runs longer than two
/// seconds, only when stderr is a terminal and --quiet was not given; an
/// empty function otherwise.
std::function<void(Index, Index)> progress_reporter(const Args& args, std::ostream& err, const std::string& what);

}  // namespace sgdstab::cli
