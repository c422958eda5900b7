#pragma once
/// \file options.hpp
/// \brief Options as data: an options struct described once, field by field
/// (its name, kind, default, help and validity), so that the command line
/// (its options, their help and "(default ...)"), the Python keywords and
/// the struct's own validate() all come from one table.
///
/// A table is a list of `OptionField<S>`. Each field names a member of S
/// (`key`, also the Python keyword), says what kind of value it holds, what
/// it means (`help`) and what values are valid (`rule`, checked by
/// `check_fields`, which S::validate() calls); its default is the member's
/// value in a default-constructed S. When the field is on the command line
/// it says how (`cli`: the option's name; `metavar`; `cli_unit`, `from_cli`/`to_cli`
/// where the command line counts in other units or words: MiB for bytes,
/// mixed|double for a bool).
///
/// \code
/// for (const auto& f : sgdstab::option_table<sgdstab::SolverOptions>())
///   std::cout << f.key << " = " << sgdstab::default_text(f) << ": " << f.help << "\n";
/// sgdstab::SolverOptions so;
/// sgdstab::option_field<sgdstab::SolverOptions>("tolerance").set(so, 1e-8);
/// \endcode
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "sgdstab/solver.hpp"

namespace sgdstab {

/// What a field holds; the value travels as an OptionValue of the matching
/// alternative (flag: bool, integer: long long, real: double, choice: the
/// enumerator's spelling, std::string).
enum class OptionKind { flag, integer, real, choice };

using OptionValue = std::variant<bool, long long, double, std::string>;

/// The text of a value as the help and the JSON write it ("1e-10", "1000",
/// "true", "lanczos").
std::string option_value_text(const OptionValue& v);

/// One field of the options struct S.
template <class S>
struct OptionField {
  std::string key;  ///< the member of S and the Python keyword (snake_case)
  OptionKind kind = OptionKind::real;
  std::string help;  ///< what it controls, one line, without the default
  /// The valid values in words, as the error says them ("must satisfy 0 <
  /// tolerance < 0.1"); empty when every value of the kind is valid.
  std::string rule;
  std::function<bool(const OptionValue&)> valid;  ///< empty: always valid
  std::function<OptionValue(const S&)> get;
  /// Sets the member from a value of the field's kind (choice: parses the
  /// spelling, sgdstab::invalid_argument naming the choices otherwise).
  std::function<void(S&, const OptionValue&)> set;
  /// The default in words where the value alone would mislead ("automatic:
  /// min(m, 16) for eta*"); empty: the default value's text.
  std::string default_words;
  /// The command-line option (without "--"); empty: not on the command line.
  std::string cli;
  /// The command line's placeholder ("X", "K", "MIB", "mixed|double").
  std::string metavar;
  /// A real on the command line counts in this unit of the member's (MiB
  /// for bytes: 1048576).
  double cli_unit = 1.0;
  /// Command-line text -> value, where the command line says it in words
  /// (mixed|double for a bool); empty: the text parsed as the field's kind.
  std::function<OptionValue(const std::string&)> from_cli;
  /// Value -> command-line text, for the default in the help; empty: option_value_text.
  std::function<std::string(const OptionValue&)> to_cli;
};

/// The table of S (lib/foundations/options.cpp).
template <class S>
const std::vector<OptionField<S>>& option_table();
template <>
const std::vector<OptionField<SolverOptions>>& option_table<SolverOptions>();
template <>
const std::vector<OptionField<Momentum>>& option_table<Momentum>();
// ReductionOptions' table: geometry.hpp.

/// The field `key` of S's table. \throws sgdstab::invalid_argument naming
/// the keys when there is none.
template <class S>
const OptionField<S>& option_field(const std::string& key);

/// Every key of S's table, joined by ", " (for messages).
template <class S>
std::string option_keys();

/// The default of field f as the help shows it (default_words, or the
/// command line's text of S{}'s value when `for_cli`, or its value's text).
template <class S>
std::string default_text(const OptionField<S>& f, bool for_cli = false);

/// Checks every field of s against its rule. \throws sgdstab::invalid_argument
/// "<where>: <key> <rule>, got <value>" for the first that fails.
template <class S>
void check_fields(const S& s, const std::string& where);

}  // namespace sgdstab
