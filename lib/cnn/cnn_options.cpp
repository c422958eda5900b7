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

namespace sgdstab {

namespace {

using namespace options_detail;

std::vector<OptionField<cnn::GramOptions>> gram_table() {
  using S = cnn::GramOptions;
  std::vector<OptionField<S>> t;
  t.push_back(default_words(on_cli(with_rule(field("chunk", &S::chunk, "samples per Gram panel"), "must be >= 0",
                                             at_least(0)),
                                   "gram-chunk", "N"),
                            "0: automatic, about 64 MiB per panel"));
  OptionField<S> memory = default_words(
      on_cli(with_rule(field("memory_limit_bytes", &S::memory_limit_bytes, "memory for the Gram's factors (bytes; MiB on the command line)"),
                       "must be finite and >= 0", nonnegative_finite),
             "gram-memory", "MIB"),
      "0: half the available memory");
  memory.cli_unit = 1024.0 * 1024.0;  // MiB on the command line
  t.push_back(memory);
  return t;
}

std::vector<OptionField<cnn::CnnTrainOptions>> cnn_train_table() {
  using S = cnn::CnnTrainOptions;
  std::vector<OptionField<S>> t;
  t.push_back(default_words(
      on_cli(with_rule(field("lr", &S::lr, "learning rate"), "must be finite and > 0", positive_finite), "lr", "ETA"),
      "none"));
  // 1 <= B <= n: the samples are validate()'s argument (check_batch).
  t.push_back(default_words(
      on_cli(with_rule(field("batch", &S::batch, "batch size"), "must be >= 1", at_least(1)), "batch", "B"), "none"));
  t.push_back(on_cli(field("schedule", &S::schedule, "the training schedule"), "sampling"));
  t.push_back(on_cli(with_rule(field("max_steps", &S::max_steps, "step budget"), "must be >= 0", at_least(0)),
                     "max-steps", "K"));
  t.push_back(on_cli(with_rule(field("residual_tolerance", &S::residual_tolerance,
                                     "a minimum when max|f - y| <= X max|y|"),
                               "must be finite and > 0", positive_finite),
                     "residual-tol", "X"));
  t.push_back(default_words(with_rule(field("check_every", &S::check_every, "steps between full-loss checks"),
                                      "must be >= 0", at_least(0)),
                            "0: one epoch, ceil(n / B)"));
  // On the command line the batches are seeded by --seed + 7.
  t.push_back(with_rule(field("seed", &S::seed, "random seed of the batches"), "must be >= 0", at_least(0)));
  t.push_back(default_words(with_rule(field("observe_every", &S::observe_every, "steps between observer calls"),
                                      "must be >= 0", at_least(0)),
                            "0: at every full-loss check"));
  t.push_back(with_rule(field("divergence_factor", &S::divergence_factor,
                              "diverged when the loss exceeds this multiple of its start"),
                        "must be finite and > 1", [](const OptionValue& v) { return real_in(v, 1.0, INFINITY); }));
  return t;
}

}  // namespace

namespace cnn {

void GramOptions::validate() const { check_fields(*this, "GramOptions"); }

void CnnTrainOptions::validate(Index samples) const {
  check_fields(*this, "CnnTrainOptions");  // the table's rules
  check_batch(batch, samples, "CnnTrainOptions::batch");
  momentum.validate();
}

}  // namespace cnn

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::cnn::GramOptions, sgdstab::gram_table);
SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::cnn::CnnTrainOptions, sgdstab::cnn_train_table);
