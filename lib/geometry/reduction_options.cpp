// ReductionOptions as data (include/sgdstab/options.hpp): its table, from
// which ReductionOptions::validate(), the command line's --rank-tol and
// --space (cli/app.cpp, cli/inputs.cpp) and the Python keywords of
// Geometry.from_jacobian / from_gram are made. What each option controls:
// theory/reduction.md.
#include <cmath>
#include <vector>

#include "foundations/option_fields.hpp"
#include "sgdstab/geometry.hpp"

namespace sgdstab {

namespace {

using namespace options_detail;

std::vector<OptionField<ReductionOptions>> reduction_table() {
  using S = ReductionOptions;
  std::vector<OptionField<S>> t;
  t.push_back(on_cli(default_words(with_rule(field("rank_tolerance", &S::rank_tolerance,
                                                   "relative rank cut-off of the Gram spectrum"),
                                             "must be finite and < 1",
                                             [](const OptionValue& v) {
                                               const double x = std::get<double>(v);
                                               return std::isfinite(x) && x < 1.0;
                                             }),
                                   "0: 10 max(nC, p) eps"),
                     "rank-tol", "X"));
  t.push_back(with_rule(field("gram_tolerance", &S::gram_tolerance,
                              "asymmetry and negative eigenvalues a Gram input may have, relative to its scale"),
                        "must be finite and >= 0", [](const OptionValue& v) {
                          const double x = std::get<double>(v);
                          return std::isfinite(x) && x >= 0.0;
                        }));
  t.push_back(on_cli(field("space", &S::space, "where the reduction is computed"), "space"));
  // On the command line --memory-limit (MiB) is SolverOptions' and sets both.
  t.push_back(default_words(with_rule(field("memory_limit_bytes", &S::memory_limit_bytes,
                                            "memory the reduction may use, bytes"),
                                      "must be finite and >= 0 (0: what the system has)",
                                      [](const OptionValue& v) {
                                        const double x = std::get<double>(v);
                                        return std::isfinite(x) && x >= 0.0;
                                      }),
                            "0: what the system has"));
  return t;
}

}  // namespace

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::ReductionOptions, sgdstab::reduction_table);
