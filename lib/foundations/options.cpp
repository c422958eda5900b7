// Options as data (include/sgdstab/options.hpp): the value text and the
// tables of SolverOptions and Momentum, from which their validate(), the
// command line's solver and momentum options (cli/app.cpp, cli/inputs.cpp)
// and the Python keywords (python/module.cpp) are made. What each option
// controls: theory/threshold.md, theory/region.md, theory/momentum.md.
#include "sgdstab/options.hpp"

#include <cmath>
#include <cstdlib>
#include <utility>
#include <sstream>
#include <type_traits>

#include "foundations/option_fields.hpp"
#include "sgdstab/errors.hpp"

namespace sgdstab {

std::string option_value_text(const OptionValue& v) {
  if (const bool* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (const long long* i = std::get_if<long long>(&v)) return std::to_string(*i);
  if (const std::string* s = std::get_if<std::string>(&v)) return *s;
  // The shortest text that reads back as the same double ("1e-10", not "1.0000000000000000e-10").
  const double x = std::get<double>(v);
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    std::ostringstream os;
    os.precision(digits);
    os << x;
    text = os.str();
    if (std::strtod(text.c_str(), nullptr) == x || !std::isfinite(x)) break;
  }
  return text;
}

namespace {

using namespace options_detail;

std::vector<OptionField<SolverOptions>> solver_table() {
  using S = SolverOptions;
  std::vector<OptionField<S>> t;
  t.push_back(on_cli(field("method", &S::method, "the eigensolver"), "method"));
  t.push_back(on_cli(with_rule(field("tolerance", &S::tolerance, "relative eigenvalue accuracy"),
                               "must satisfy 0 < tolerance < 0.1",
                               [](const OptionValue& v) { return real_in(v, 0.0, 0.1); }),
                     "tol", "X"));
  t.push_back(on_cli(default_words(with_rule(field("subspace_dimension", &S::subspace_dimension,
                                                   "Lanczos subspace dimension"),
                                             "must be 0 (automatic) or >= 3",
                                             [](const OptionValue& v) {
                                               const long long k = std::get<long long>(v);
                                               return k == 0 || k >= 3;
                                             }),
                                   "0: min(m, 16) for eta*, min(m, 12) for rho"),
                     "ncv", "K"));
  t.push_back(on_cli(with_rule(field("max_iterations", &S::max_iterations,
                                     "Lanczos restarts allowed; past them the result says not_converged"),
                               "must be >= 1", at_least(1)),
                     "max-restarts", "K"));
  t.push_back(with_rule(field("dense_max_dimension", &S::dense_max_dimension,
                              "automatic uses the dense method when m = r(r+1)/2 <= this"),
                        "must be >= 0", at_least(0)));
  t.push_back(with_rule(field("dense_fallback_max_dimension", &S::dense_fallback_max_dimension,
                              "the dense method is a fallback for a failed Lanczos only when m <= this"),
                        "must be >= 0", at_least(0)));
  t.push_back(field("want_direction", &S::want_direction, "also return the top eigen-direction (r x r)"));
  OptionField<S> memory = on_cli(
      default_words(with_rule(field("memory_limit_bytes", &S::memory_limit_bytes,
                                    "memory the reduction and the solver may use"),
                              "must be finite and >= 0 (0: what the system has)",
                              [](const OptionValue& v) { return std::isfinite(std::get<double>(v)) && std::get<double>(v) >= 0; }),
                    "0: what the system has"),
      "memory-limit", "MIB");
  memory.help = "memory the reduction and the solver may use (MiB on the command line, bytes in C++ and Python)";
  memory.cli_unit = 1024.0 * 1024.0;
  t.push_back(memory);
  t.push_back(on_cli(default_words(field("device", &S::device, "where eta*'s operator applications run"),
                                   "auto: the GPU when usable"),
                     "device"));
  OptionField<S> precision =
      on_cli(field("mixed_precision", &S::mixed_precision,
                   "eta*'s first applications in single precision, certified in double (r >= 512, CPU)"),
             "precision", "mixed|double");
  precision.from_cli = [](const std::string& text) -> OptionValue {
    if (text == "mixed") return true;
    if (text == "double") return false;
    throw invalid_argument("--precision: expected mixed or double, got '" + text + "'");
  };
  precision.to_cli = [](const OptionValue& v) -> std::string { return std::get<bool>(v) ? "mixed" : "double"; };
  t.push_back(precision);
  t.push_back(with_rule(field("mixed_precision_min_rank", &S::mixed_precision_min_rank,
                              "the rank from which mixed_precision applies"),
                        "must be >= 0", at_least(0)));
  return t;
}

std::vector<OptionField<Momentum>> momentum_table() {
  using S = Momentum;
  std::vector<OptionField<S>> t;
  t.push_back(on_cli(with_rule(field("beta", &S::beta,
                                     "SGD with momentum: PyTorch's SGD(momentum=BETA), 0 <= BETA < 1 "
                                     "(theory/momentum.md)"),
                               "must satisfy 0 <= beta < 1",
                               [](const OptionValue& v) {
                                 const double b = std::get<double>(v);
                                 return std::isfinite(b) && b >= 0.0 && b < 1.0;
                               }),
                     "momentum", "BETA"));
  t.push_back(on_cli(field("nesterov", &S::nesterov,
                           "Nesterov momentum (PyTorch's nesterov=True; needs --momentum / momentum=BETA)"),
                     "nesterov"));
  return t;
}

}  // namespace

}  // namespace sgdstab

SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::SolverOptions, sgdstab::solver_table);
SGDSTAB_DEFINE_OPTION_TABLE(sgdstab::Momentum, sgdstab::momentum_table);
