#pragma once
/// \file cnn_options.hpp
/// \brief The options of the LibTorch module sgdstab::cnn (cnn.hpp) without
/// LibTorch: GramOptions and CnnTrainOptions with their tables
/// (options.hpp), so that the command line's help and checks, built without
/// LibTorch, come from the same tables as the module's validate().
#include <cstdint>
#include <functional>
#include <vector>

#include "sgdstab/options.hpp"
#include "sgdstab/schedule.hpp"
#include "sgdstab/solver.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab::cnn {

class Cnn;

/// How Cnn::gram holds the Jacobian.
struct GramOptions {
  Index chunk = 0;                  ///< samples per batched pass; 0 = automatic (chunks of about 64 MiB)
  /// Bytes for the held factors; 0 = half the available host memory (on CUDA
  /// the factors live on the device: give the device's budget here).
  double memory_limit_bytes = 0.0;
  /// \throws sgdstab::invalid_argument naming the field that breaks its rule.
  void validate() const;
};

/// Options of train_cnn. validate() throws sgdstab::invalid_argument.
struct CnnTrainOptions {
  double lr = 0.0;
  Index batch = 0;
  Schedule schedule = Schedule::without_replacement;  ///< the library's schemes, incl. reshuffle
  Index max_steps = 100000;
  double residual_tolerance = 1e-6;  ///< max |f - y| <= tolerance * max|y|
  Index check_every = 0;             ///< full-loss check period; 0 = one epoch's worth, ceil(n / B)
  std::uint64_t seed = 0;
  std::function<void(Index, Index)> progress;  ///< (steps done, max steps); may be empty
  /// Called at step 0 and every `observe_every` steps (e.g. alignment_at, checkpoints); may be empty.
  std::function<void(Index, const Cnn&)> observer;
  Index observe_every = 0;  ///< 0 = at every full-loss check
  /// Stop (Status::diverged) when L exceeds this multiple of its initial value.
  double divergence_factor = 1e8;
  /// SGD with momentum (PyTorch's convention, theory/momentum.md); beta = 0: plain.
  Momentum momentum;
  void validate(Index samples) const;
};

}  // namespace sgdstab::cnn

namespace sgdstab {

/// GramOptions' table: chunk and memory_limit_bytes (--gram-chunk, --gram-memory in MiB).
template <>
const std::vector<OptionField<cnn::GramOptions>>& option_table<cnn::GramOptions>();
/// CnnTrainOptions' table: lr, batch, schedule, max_steps, residual_tolerance,
/// check_every, seed, observe_every and divergence_factor; momentum is
/// Momentum's table, progress and observer are code.
template <>
const std::vector<OptionField<cnn::CnnTrainOptions>>& option_table<cnn::CnnTrainOptions>();

}  // namespace sgdstab
