// GramOptions and CnnTrainOptions as data (include/sgdstab/cnn_options.hpp):
// the CNN Gram's chunk and memory, the CNN trainer's rate, batch, schedule,
// budget, tolerance, check and observation periods, seed and divergence
// level, from which the cnn commands' --gram-chunk, --gram-memory, --lr,
// --batch, --sampling, --max-steps and --residual-tol (cli/app.cpp,
// cli/cnn_problem.cpp) and both validate()s come (theory/cnn.md, section
// 5). Without LibTorch: this unit is in the core library, so that the
// program that declares the cnn commands (built without LibTorch) has their
// help from these tables.
#include <cmath>
#include <vector>

#include "foundations/option_fields.hpp"
#include "sgdstab/cnn_options.hpp"
#include "sgdstab/sampling.hpp"

namespace sgdstab::options_detail {

std::vector<OptionField<cnn::GramOptions>> gram_table() {
  using S = cnn::GramOptions;
  return {
      default_words(on_cli(with_rule(field("chunk", &S::chunk, "samples per Gram panel"), "must be >= 0", at_least(0)),
                           "gram-chunk", "N"),
                    "0: automatic, about 64 MiB per panel"),
      cli_in_units(default_words(on_cli(with_rule(field("memory_limit_bytes", &S::memory_limit_bytes,
                                                        "memory for the Gram's factors (bytes; MiB on the command line)"),
                                                  "must be finite and >= 0", nonnegative_finite),
                                        "gram-memory", "MIB"),
                                 "0: half the available memory"),
                   1024.0 * 1024.0),
  };
}

std::vector<OptionField<cnn::CnnTrainOptions>> cnn_train_table() {
  using S = cnn::CnnTrainOptions;
  return {
      default_words(
          on_cli(with_rule(field("lr", &S::lr, "learning rate"), "must be finite and > 0", positive_finite), "lr", "ETA"),
          "none"),
      // 1 <= B <= n: the samples are validate()'s argument (check_batch).
      default_words(
          on_cli(with_rule(field("batch", &S::batch, "batch size"), "must be >= 1", at_least(1)), "batch", "B"), "none"),
      on_cli(field("schedule", &S::schedule, "the training schedule"), "sampling"),
      on_cli(with_rule(field("max_steps", &S::max_steps, "step budget"), "must be >= 0", at_least(0)), "max-steps", "K"),
      residual_tolerance_field(&S::residual_tolerance),
      default_words(with_rule(field("check_every", &S::check_every, "steps between full-loss checks"), "must be >= 0",
                              at_least(0)),
                    "0: one epoch, ceil(n / B)"),
      // On the command line the batches are seeded by --seed + 7.
      with_rule(field("seed", &S::seed, "random seed of the batches"), "must be >= 0", at_least(0)),
      default_words(with_rule(field("observe_every", &S::observe_every, "steps between observer calls"), "must be >= 0",
                              at_least(0)),
                    "0: at every full-loss check"),
      divergence_factor_field(&S::divergence_factor),
  };
}

}  // namespace sgdstab::options_detail

namespace sgdstab::cnn {

void GramOptions::validate() const { check_fields(*this, "GramOptions"); }

void CnnTrainOptions::validate(Index samples) const {
  check_fields(*this, "CnnTrainOptions");  // the table's rules
  check_batch(batch, samples, "CnnTrainOptions::batch");
  momentum.validate();
}

}  // namespace sgdstab::cnn

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::cnn::GramOptions, sgdstab::options_detail::gram_table);
SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::cnn::CnnTrainOptions, sgdstab::options_detail::cnn_train_table);
