#pragma once
// The command line of an options table (include/sgdstab/options.hpp): each
// field's help line, generated from the table with its default, and the
// values of the options given, parsed, converted and checked against the
// field's rule with the option's name in the message.
#include <string>

#include "args.hpp"
#include "sgdstab/options.hpp"

namespace sgdstab::cli {

/// Whether --<f.cli> is a flag (a bool field the command line does not say in words).
template <class S>
bool is_cli_flag(const OptionField<S>& f) {
  return f.kind == OptionKind::flag && !f.from_cli;
}

/// "METAVAR: help (default D)" for the command line's --<f.cli>; `help`
/// replaces the table's words where a command gives the option a narrower
/// meaning (the region's --tol is the width of each certified interval),
/// and its default's words too when it says "(default ...)" itself.
template <class S>
std::string cli_help(const OptionField<S>& f, const std::string& help = "") {
  if (is_cli_flag(f)) return help.empty() ? f.help : help;  // a flag: off unless given
  if (help.find("(default") != std::string::npos) return f.metavar + ": " + help;
  return f.metavar + ": " + (help.empty() ? f.help : help) + " (default " + default_text(f, true) + ")";
}

/// Sets field f of s when its option was given. \throws UsageError naming
/// the option ("--max-restarts: must be >= 1, got '0'").
template <class S>
void apply_cli_field(const Args& args, const OptionField<S>& f, S& s) {
  if (f.cli.empty() || !args.has(f.cli)) return;
  const std::string option = "--" + f.cli, text = is_cli_flag(f) ? std::string() : args.str(f.cli);
  OptionValue v;
  if (f.from_cli) {
    try {
      v = f.from_cli(text);
    } catch (const std::exception& e) {
      throw UsageError(e.what());
    }
  } else if (f.kind == OptionKind::integer) {
    v = parse_integer(text, option);
  } else if (f.kind == OptionKind::real) {
    v = parse_number(text, option) * f.cli_unit;
  } else if (f.kind == OptionKind::flag) {
    v = true;
  } else {
    v = text;
  }
  if (f.valid && !f.valid(v)) throw UsageError(option + ": " + f.rule + ", got '" + text + "'");
  f.set(s, v);  // a choice's spelling is parsed here: sgdstab::invalid_argument names the choices
}

/// Sets every field of s whose option was given.
template <class S>
void apply_cli(const Args& args, S& s) {
  for (const OptionField<S>& f : option_table<S>()) apply_cli_field(args, f, s);
}

}  // namespace sgdstab::cli
