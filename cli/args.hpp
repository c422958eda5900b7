#pragma once
// The options of one command as CLI11 parsed them (cli/app.cpp declares every
// command's options, their help and their relations), read through strict
// accessors: integers and numbers are parsed here, so every command reports
// a bad value the same way ("--batch: expected an integer, got 'two'").
#include <stdexcept>
#include <string>
#include <vector>

#include "sgdstab/types.hpp"

namespace CLI {
class App;
}

namespace sgdstab::cli {

/// Bad usage: the program prints the message and the command's help, exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  /// The parsed subcommand `app` named `command` ("threshold", "cnn train", ...).
  Args(const CLI::App& app, std::string command) : app_(&app), command_(std::move(command)) {}
  const std::string& command() const { return command_; }
  /// Whether option --key was given (a value option or a flag).
  bool has(const std::string& key) const;
  bool flag(const std::string& key) const { return has(key); }
  std::string str(const std::string& key) const;  ///< required
  std::string str_or(const std::string& key, const std::string& fallback) const;
  long long integer(const std::string& key) const;  ///< required, strict
  long long integer_or(const std::string& key, long long fallback) const;
  double number(const std::string& key) const;  ///< required, strict, finite
  double number_or(const std::string& key, double fallback) const;
  std::vector<long long> integer_list(const std::string& key) const;  ///< "1,2,4"
  /// The enumerator spelled by --key (parse<E>: an error names the choices), or `fallback`.
  template <class E>
  E choice(const std::string& key, E fallback) const {
    return has(key) ? parse<E>(str(key)) : fallback;
  }
  /// Every value of a repeatable option (app.cpp's kRepeatable), in order.
  std::vector<std::string> all(const std::string& key) const;

 private:
  const CLI::App* app_;
  std::string command_;
};

long long parse_integer(const std::string& text, const std::string& what);
double parse_number(const std::string& text, const std::string& what);

}  // namespace sgdstab::cli
