// EscapeOptions as data (include/sgdstab/options.hpp): the runs' start,
// number, length, classification levels, seed and confidence, from which
// the escape command's --epsilon, --runs and --escape-steps (cli/app.cpp,
// cli/cmd_escape.cpp) and EscapeOptions::validate() come. The run itself
// (lr, batch, schedule, momentum) is the caller's (theory/montecarlo.md,
// section 7).
#include <cmath>
#include <vector>

#include "foundations/option_fields.hpp"
#include "sgdstab/escape.hpp"

namespace sgdstab {

namespace {

using namespace options_detail;

std::vector<OptionField<EscapeOptions>> escape_table() {
  using S = EscapeOptions;
  std::vector<OptionField<S>> t;
  t.push_back(on_cli(with_rule(field("epsilon", &S::epsilon, "distance of the start from the minimum"),
                               "must be finite and > 0",
                               [](const OptionValue& v) { return real_in(v, 0.0, INFINITY); }),
                     "epsilon", "E"));
  t.push_back(on_cli(with_rule(field("runs", &S::runs, "runs"), "must be >= 1", at_least(1)), "runs", "R"));
  t.push_back(on_cli(with_rule(field("max_steps", &S::max_steps, "steps per run"), "must be >= 1", at_least(1)),
                     "escape-steps", "K"));
  t.push_back(with_rule(field("escape_factor", &S::escape_factor, "escaped when L_t > escape_factor L_0"),
                        "must be finite and > 1", [](const OptionValue& v) { return real_in(v, 1.0, INFINITY); }));
  t.push_back(with_rule(field("converge_factor", &S::converge_factor, "returned when L_t < converge_factor L_0"),
                        "must lie in (0, 1)", [](const OptionValue& v) { return real_in(v, 0.0, 1.0); }));
  // On the command line the problem's --seed seeds the runs too.
  t.push_back(with_rule(field("seed", &S::seed, "random seed of the runs' directions and batches"), "must be >= 0",
                        at_least(0)));
  t.push_back(with_rule(field("confidence", &S::confidence, "level of the escape fraction's interval"),
                        "must lie in (0, 1)", [](const OptionValue& v) { return real_in(v, 0.0, 1.0); }));
  return t;
}

}  // namespace

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::EscapeOptions, sgdstab::escape_table);
