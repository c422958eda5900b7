// CrossCheckOptions as data (include/sgdstab/options.hpp): the Monte Carlo
// run's sizes, seed and levels, from which the command line's --steps,
// --trajectories, --blocks and --seed (cli/app.cpp, cli/cmd_montecarlo.cpp),
// the keywords of Python's sgdstab.montecarlo and cross_check's own checks
// are made. The run itself (lr, batch, schedule, momentum) is the caller's
// (theory/montecarlo.md).
#include <cmath>
#include <vector>

#include "foundations/option_fields.hpp"
#include "sgdstab/montecarlo.hpp"

namespace sgdstab {

namespace {

using namespace options_detail;

bool open_unit(const OptionValue& v) { return real_in(v, 0.0, 1.0); }

std::vector<OptionField<CrossCheckOptions>> cross_check_table() {
  using S = CrossCheckOptions;
  std::vector<OptionField<S>> t;
  t.push_back(on_cli(with_rule(field<S>("steps", &S::steps, "steps per trajectory"), "must be >= 0", at_least(0)),
                     "steps", "T"));
  t.push_back(on_cli(with_rule(field<S>("trajectories", &S::trajectories, "trajectories"), "must be >= 2",
                               at_least(2)),
                     "trajectories", "M"));
  t.push_back(on_cli(with_rule(field<S>("blocks", &S::blocks, "sampled batches or epochs of the operator estimate"),
                               "must be >= 2", at_least(2)),
                     "blocks", "K"));
  t.push_back(on_cli(with_rule(field<S>("seed", &S::seed, "random seed"), "must be >= 0", at_least(0)), "seed", "S"));
  t.push_back(with_rule(field<S>("confidence", &S::confidence, "level of the reported intervals"),
                        "must lie in (0, 1)", open_unit));
  t.push_back(with_rule(field<S>("significance", &S::significance,
                                 "probability of a false 'disagree' when the exact answer is right (Bonferroni-split)"),
                        "must lie in (0, 1)", open_unit));
  return t;
}

}  // namespace

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::CrossCheckOptions, sgdstab::cross_check_table);
