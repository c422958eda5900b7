// MinimizeOptions and TrainOptions as data (include/sgdstab/options.hpp):
// the minimizers' tolerance and budget, the SGD trainer's rate, batch,
// scheme, budget, check period, seed and divergence level, from which the
// command line's --residual-tol, --max-iter, --lr, --batch,
// --train-sampling, --max-steps and --log-every (cli/app.cpp,
// cli/problem.cpp), the `minimum` JSON's "options" and both validate()s
// come (theory/minimize.md). The trainer's momentum is Momentum's table;
// its observer is code, not an option.
#include <cmath>
#include <vector>

#include "foundations/option_fields.hpp"
#include "sgdstab/minimize.hpp"

namespace sgdstab::options_detail {

std::vector<OptionField<MinimizeOptions>> minimize_table() {
  using S = MinimizeOptions;
  return {
      residual_tolerance_field(&S::residual_tolerance),
      on_cli(with_rule(field("max_iterations", &S::max_iterations, "Gauss-Newton iterations"), "must be >= 0",
                       at_least(0)),
             "max-iter", "K"),
      default_words(with_rule(field("memory_limit_bytes", &S::memory_limit_bytes,
                                    "memory the minimizer may use, in bytes"),
                              "must be finite and >= 0", nonnegative_finite),
                    "0: what is available"),
  };
}

std::vector<OptionField<TrainOptions>> train_table() {
  using S = TrainOptions;
  return {
      default_words(on_cli(with_rule(field("lr", &S::lr, "learning rate of the gd and sgd trainers"),
                                     "must be finite and > 0", positive_finite),
                           "lr", "ETA"),
                    "none: required"),
      // 1 <= B <= n: the samples are validate()'s argument (check_batch).
      default_words(on_cli(with_rule(field("batch", &S::batch, "batch size of the sgd trainer (gd: n)"),
                                     "must be >= 1", at_least(1)),
                           "batch", "B"),
                    "none: required"),
      on_cli(field("sampling", &S::sampling, "the sgd trainer's mini-batch scheme"), "train-sampling", "S"),
      on_cli(with_rule(field("max_steps", &S::max_steps, "step budget of the gd and sgd trainers"), "must be >= 0",
                       at_least(0)),
             "max-steps", "K"),
      residual_tolerance_field(&S::residual_tolerance),
      default_words(on_cli(with_rule(field("check_every", &S::check_every,
                                           "steps between full-loss checks (and --alignment-log rows)"),
                                     "must be >= 0", at_least(0)),
                           "log-every", "K"),
                    "0: one epoch, max(1, floor(n / B))"),
      // On the command line the trainer's batches are seeded by --seed + 7.
      with_rule(field("seed", &S::seed, "random seed of the batches"), "must be >= 0", at_least(0)),
      divergence_factor_field(&S::divergence_factor),
  };
}

}  // namespace sgdstab::options_detail

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::MinimizeOptions, sgdstab::options_detail::minimize_table);
SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::TrainOptions, sgdstab::options_detail::train_table);
