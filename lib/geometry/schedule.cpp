// Batch schedules: theory/sampling.md (the closed-form schemes) and
// theory/montecarlo.md, section 2 (reshuffling).
#include "sgdstab/schedule.hpp"

#include <algorithm>

#include "foundations/check.hpp"

namespace sgdstab {

Schedule to_schedule(Sampling s) {
  switch (s) {
    case Sampling::without_replacement: return Schedule::without_replacement;
    case Sampling::with_replacement: return Schedule::with_replacement;
    case Sampling::bernoulli: return Schedule::bernoulli;
  }
  return Schedule::without_replacement;
}

std::optional<Sampling> closed_form(Schedule s) {
  switch (s) {
    case Schedule::without_replacement: return Sampling::without_replacement;
    case Schedule::with_replacement: return Sampling::with_replacement;
    case Schedule::bernoulli: return Sampling::bernoulli;
    case Schedule::reshuffle: return std::nullopt;
  }
  return std::nullopt;
}


std::vector<Index> draw_batch(Sampling scheme, Index samples, Index batch, Rng& rng) {
  check_batch(batch, samples, "draw_batch");
  std::vector<Index> out;
  const auto n = static_cast<std::uint64_t>(samples);
  switch (scheme) {
    case Sampling::without_replacement: {
      // Floyd's algorithm: a uniform B-subset in B draws. Membership by a
      // linear scan for small B, by an n-byte mark array otherwise.
      out.reserve(static_cast<std::size_t>(batch));
      std::vector<char> marked(batch > 32 ? static_cast<std::size_t>(samples) : 0, 0);
      auto chosen = [&](Index t) {
        return marked.empty() ? std::find(out.begin(), out.end(), t) != out.end()
                              : marked[static_cast<std::size_t>(t)] != 0;
      };
      for (std::uint64_t j = n - static_cast<std::uint64_t>(batch); j < n; ++j) {
        auto t = static_cast<Index>(rng.below(j + 1));
        if (chosen(t)) t = static_cast<Index>(j);
        out.push_back(t);
        if (!marked.empty()) marked[static_cast<std::size_t>(t)] = 1;
      }
      break;
    }
    case Sampling::with_replacement:
      for (Index j = 0; j < batch; ++j) out.push_back(static_cast<Index>(rng.below(n)));
      break;
    case Sampling::bernoulli: {
      const double q = static_cast<double>(batch) / static_cast<double>(samples);
      for (Index i = 0; i < samples; ++i)
        if (rng.uniform() < q) out.push_back(i);
      break;
    }
  }
  return out;
}

BatchSampler::BatchSampler(Schedule schedule, Index samples, Index batch, std::uint64_t seed)
    : schedule_(schedule), n_(samples), b_(batch), rng_(seed) {
  check_batch(batch, samples, "BatchSampler");
  if (schedule_ == Schedule::reshuffle) {
    permutation_.resize(static_cast<std::size_t>(n_));
    position_ = n_;  // the first call starts an epoch
  }
}

Index BatchSampler::steps_per_block() const { return schedule_ == Schedule::reshuffle ? (n_ + b_ - 1) / b_ : 1; }

const std::vector<Index>& BatchSampler::next(double& divisor) {
  batch_.clear();
  switch (schedule_) {
    case Schedule::without_replacement:
    case Schedule::with_replacement:
    case Schedule::bernoulli:
      batch_ = draw_batch(*closed_form(schedule_), n_, b_, rng_);  // minimize.hpp: one sampler for both
      divisor = static_cast<double>(b_);
      break;
    case Schedule::reshuffle: {
      if (position_ >= n_) {  // new epoch: Fisher-Yates shuffle
        for (Index i = 0; i < n_; ++i) permutation_[static_cast<std::size_t>(i)] = i;
        for (Index i = n_ - 1; i > 0; --i)
          std::swap(permutation_[static_cast<std::size_t>(i)],
                    permutation_[static_cast<std::size_t>(rng_.below(static_cast<std::uint64_t>(i + 1)))]);
        position_ = 0;
      }
      const Index end = std::min(n_, position_ + b_);
      for (Index i = position_; i < end; ++i) batch_.push_back(permutation_[static_cast<std::size_t>(i)]);
      divisor = static_cast<double>(end - position_);
      position_ = end;
      break;
    }
  }
  return batch_;
}

}  // namespace sgdstab
