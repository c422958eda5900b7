#pragma once
// Building an options table (include/sgdstab/options.hpp), internal: the
// field builders every layer's table uses, and the generic functions over a
// table, defined with it by the unit that builds it (at global scope):
//   SGDSTAB_DEFINE_OPTION_TABLE(S, make_table)  // make_table() returns the fields
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sgdstab/errors.hpp"
#include "sgdstab/options.hpp"
#include "sgdstab/types.hpp"

namespace sgdstab {
namespace options_detail {

[[noreturn]] inline void wrong_kind(const std::string& key, const char* expected) {
  throw invalid_argument(key + ": expected " + std::string(expected));
}

inline double as_real(const OptionValue& v, const std::string& key) {
  if (const double* x = std::get_if<double>(&v)) return *x;
  if (const long long* i = std::get_if<long long>(&v)) return static_cast<double>(*i);
  wrong_kind(key, "a number");
}

inline long long as_integer(const OptionValue& v, const std::string& key) {
  if (const long long* i = std::get_if<long long>(&v)) return *i;
  wrong_kind(key, "an integer");
}

inline bool as_flag(const OptionValue& v, const std::string& key) {
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  wrong_kind(key, "true or false");
}

// A field for member `m` of its class, or with field<S>(...) for a member
// of a base of S; its kind follows the member's type.
template <class Owner = void, class T, class B>
OptionField<std::conditional_t<std::is_void_v<Owner>, B, Owner>> field(std::string key, T B::*member,
                                                                      std::string help) {
  using S = std::conditional_t<std::is_void_v<Owner>, B, Owner>;
  static_assert(std::is_base_of_v<B, S>, "the member belongs to S or to a base of S");
  T S::*m = member;
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

inline bool real_in(const OptionValue& v, double lo_open, double hi_open) {
  const double x = std::get<double>(v);
  return std::isfinite(x) && x > lo_open && x < hi_open;
}

/// (0, inf) for a real field.
inline bool positive_finite(const OptionValue& v) { return real_in(v, 0.0, INFINITY); }

/// [0, inf) for a real field.
inline bool nonnegative_finite(const OptionValue& v) {
  const double x = std::get<double>(v);
  return std::isfinite(x) && x >= 0.0;
}

/// The minimizers' and trainers' relative tolerance, --residual-tol X: a
/// minimum when max|f - y| <= X max|y| (theory/minimize.md).
template <class S>
OptionField<S> residual_tolerance_field(double S::*member);

/// The trainers' divergence level: diverged when the loss exceeds this
/// multiple of its start (> 1).
template <class S>
OptionField<S> divergence_factor_field(double S::*member);

/// [lo, inf) for an integer field.
inline auto at_least(long long lo) {
  return [lo](const OptionValue& v) { return std::get<long long>(v) >= lo; };
}

template <class S>
OptionField<S> residual_tolerance_field(double S::*member) {
  return on_cli(with_rule(field("residual_tolerance", member, "a minimum when max|f - y| <= X max|y|"),
                          "must be finite and > 0", positive_finite),
                "residual-tol", "X");
}

template <class S>
OptionField<S> divergence_factor_field(double S::*member) {
  return with_rule(field("divergence_factor", member, "diverged when the loss exceeds this multiple of its start"),
                   "must be finite and > 1", [](const OptionValue& v) { return real_in(v, 1.0, INFINITY); });
}

/// f with the command line counting in `unit`s of the member's (MiB for bytes).
template <class S>
OptionField<S> cli_in_units(OptionField<S> f, double unit) {
  f.cli_unit = unit;
  return f;
}

}  // namespace options_detail

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

}  // namespace sgdstab

#define SGDSTAB_INSTANTIATE_OPTION_TABLE(S)                                                    \
  template std::string sgdstab::option_keys<S>();                                             \
  template const sgdstab::OptionField<S>& sgdstab::option_field<S>(const std::string&);       \
  template std::string sgdstab::default_text<S>(const sgdstab::OptionField<S>&, bool);       \
  template void sgdstab::check_fields<S>(const S&, const std::string&)

/// option_table<S>() as the fields make() returns (built once), and the
/// generic functions over it for S.
#define SGDSTAB_DEFINE_OPTION_TABLE(S, make)                               \
  template <>                                                           \
  const std::vector<sgdstab::OptionField<S>>& sgdstab::option_table<S>() { \
    static const std::vector<sgdstab::OptionField<S>> table = make();    \
    return table;                                                       \
  }                                                                     \
  SGDSTAB_INSTANTIATE_OPTION_TABLE(S)
