#pragma once
/// \file schedule.hpp
/// \brief How SGD draws its batches: one batch of a closed-form scheme
/// (draw_batch), and the batches of a whole run under a Schedule, including
/// random reshuffling (BatchSampler). The trainers (minimize.hpp, cnn.hpp),
/// the Monte Carlo check (montecarlo.hpp) and the escape runs (escape.hpp)
/// all draw through these, so a scheme means the same thing everywhere
/// (theory/sampling.md; reshuffling: theory/montecarlo.md, section 2).
///
/// \code
/// sgdstab::Rng rng(1);
/// auto batch = sgdstab::draw_batch(sgdstab::Sampling::without_replacement, 100, 8, rng);
/// sgdstab::BatchSampler epochs(sgdstab::Schedule::reshuffle, 10, 4, /*seed=*/1);
/// double divisor = 0;
/// auto b = epochs.next(divisor);  // 4 indices, divisor 4; the third batch has 2, divisor 2
/// \endcode
#include <cstdint>
#include <optional>
#include <vector>

#include "sgdstab/random.hpp"
#include "sgdstab/sampling.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {

/// Draws one batch (indices into 0..n-1) by the sampling scheme; bernoulli
/// batches may be empty. Used by train_sgd and the Monte Carlo module.
std::vector<Index> draw_batch(Sampling scheme, Index samples, Index batch, Rng& rng);

/// The schedule that draws batches as `s` does (Schedule: types.hpp).
Schedule to_schedule(Sampling s);
/// The closed-form scheme of a schedule; empty for reshuffle.
std::optional<Sampling> closed_form(Schedule s);

/// Draws the batches of one SGD run. Each batch is a list of sample indices
/// (repeats possible with replacement; bernoulli batches may be empty) and a
/// divisor (B, or the size of reshuffle's last short batch).
class BatchSampler {
 public:
  /// \throws sgdstab::invalid_argument unless 1 <= batch <= samples.
  BatchSampler(Schedule schedule, Index samples, Index batch, std::uint64_t seed);
  /// The next batch; `divisor` receives the number its gradient sum is divided by.
  const std::vector<Index>& next(double& divisor);
  /// Batches per epoch for reshuffle (ceil(n / B)); 1 for the i.i.d. schemes.
  Index steps_per_block() const;

 private:
  Schedule schedule_;
  Index n_, b_;
  Rng rng_;
  std::vector<Index> batch_, permutation_;
  Index position_ = 0;
};

}  // namespace sgdstab
