// Options as data (include/sgdstab/options.hpp): the generic parts and the
// table of SolverOptions, from which SolverOptions::validate(), the command
// line's solver options (cli/app.cpp, cli/inputs.cpp) and the Python keywords
// (python/module.cpp) are made. What each option controls: theory/threshold.md
// and theory/region.md.
#include "sgdstab/options.hpp"

#include <cmath>
#include <cstdlib>
#include <utility>
#include <sstream>
#include <type_traits>

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

[[noreturn]] void wrong_kind(const std::string& key, const char* expected) {
  throw invalid_argument(key + ": expected " + std::string(expected));
}

double as_real(const OptionValue& v, const std::string& key) {
  if (const double* x = std::get_if<double>(&v)) return *x;
  if (const long long* i = std::get_if<long long>(&v)) return static_cast<double>(*i);
  wrong_kind(key, "a number");
}

long long as_integer(const OptionValue& v, const std::string& key) {
  if (const long long* i = std::get_if<long long>(&v)) return *i;
  wrong_kind(key, "an integer");
}

bool as_flag(const OptionValue& v, const std::string& key) {
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  wrong_kind(key, "true or false");
}

// A field for member `m` of S; its kind follows the member's type.
template <class S, class T>
OptionField<S> field(std::string key, T S::*m, std::string help) {
  OptionField<S> f;
  f.key = key;
  f.help = std::move(help);
  if constexpr (std::is_same_v<T, bool>) {
    f.kind = OptionKind::flag;
    f.get = [m](const S& s) { return OptionValue(s.*m); };
    f.set = [m, key](S& s, const OptionValue& v) { s.*m = as_flag(v, key); };
  } else if constexpr (std::is_enum_v<T>) {
    f.kind = OptionKind::choice;
    f.metavar = choices<T>();
    f.get = [m](const S& s) { return OptionValue(to_string(s.*m)); };
    f.set = [m, key](S& s, const OptionValue& v) {
      const std::string* text = std::get_if<std::string>(&v);
      if (!text) wrong_kind(key, choices<T>().c_str());
      s.*m = parse<T>(*text);
    };
  } else if constexpr (std::is_integral_v<T>) {
    f.kind = OptionKind::integer;
    f.get = [m](const S& s) { return OptionValue(static_cast<long long>(s.*m)); };
    f.set = [m, key](S& s, const OptionValue& v) { s.*m = static_cast<T>(as_integer(v, key)); };
  } else {
    static_assert(std::is_same_v<T, double>, "an option is a bool, an integer, a double or an enumeration");
    f.kind = OptionKind::real;
    f.get = [m](const S& s) { return OptionValue(s.*m); };
    f.set = [m, key](S& s, const OptionValue& v) { s.*m = as_real(v, key); };
  }
  return f;
}

template <class S, class P>
OptionField<S> with_rule(OptionField<S> f, std::string rule, P pred) {
  f.rule = std::move(rule);
  f.valid = std::move(pred);
  return f;
}

template <class S>
OptionField<S> on_cli(OptionField<S> f, std::string name, std::string metavar = "") {
  f.cli = std::move(name);
  if (!metavar.empty()) f.metavar = std::move(metavar);
  return f;
}

template <class S>
OptionField<S> default_words(OptionField<S> f, std::string words) {
  f.default_words = std::move(words);
  return f;
}

bool real_in(const OptionValue& v, double lo_open, double hi_open) {
  const double x = std::get<double>(v);
  return std::isfinite(x) && x > lo_open && x < hi_open;
}

std::vector<OptionField<SolverOptions>> solver_table() {
  using S = SolverOptions;
  const auto at_least = [](long long lo) {
    return [lo](const OptionValue& v) { return std::get<long long>(v) >= lo; };
  };
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

}  // namespace

template <>
const std::vector<OptionField<SolverOptions>>& option_table<SolverOptions>() {
  static const std::vector<OptionField<SolverOptions>> table = solver_table();
  return table;
}

template <class S>
std::string option_keys() {
  std::string out;
  for (const OptionField<S>& f : option_table<S>()) out += (out.empty() ? "" : ", ") + f.key;
  return out;
}

template <class S>
const OptionField<S>& option_field(const std::string& key) {
  for (const OptionField<S>& f : option_table<S>())
    if (f.key == key) return f;
  throw invalid_argument("no option '" + key + "' (options: " + option_keys<S>() + ")");
}

template <class S>
std::string default_text(const OptionField<S>& f, bool for_cli) {
  if (!f.default_words.empty()) return f.default_words;
  const OptionValue v = f.get(S{});
  return for_cli && f.to_cli ? f.to_cli(v) : option_value_text(v);
}

template <class S>
void check_fields(const S& s, const std::string& where) {
  for (const OptionField<S>& f : option_table<S>()) {
    if (!f.valid) continue;
    const OptionValue v = f.get(s);
    if (!f.valid(v)) throw invalid_argument(where + ": " + f.key + " " + f.rule + ", got " + option_value_text(v));
  }
}

template std::string option_keys<SolverOptions>();
template const OptionField<SolverOptions>& option_field<SolverOptions>(const std::string&);
template std::string default_text<SolverOptions>(const OptionField<SolverOptions>&, bool);
template void check_fields<SolverOptions>(const SolverOptions&, const std::string&);

}  // namespace sgdstab
