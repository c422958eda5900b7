#pragma once
// Minimal strict command-line parsing: `sgdstab COMMAND --key value ... --flag`.
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace sgdstab::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  /// argv[1] is the command; the rest are `--key value` pairs or flags named in `flags`.
  Args(int argc, const char* const* argv, const std::set<std::string>& flags);
  const std::string& command() const { return command_; }
  bool has(const std::string& key) const;
  std::string str(const std::string& key) const;  ///< required
  std::string str_or(const std::string& key, const std::string& fallback) const;
  long long integer(const std::string& key) const;  ///< required, strict
  long long integer_or(const std::string& key, long long fallback) const;
  double number(const std::string& key) const;  ///< required, strict, finite
  double number_or(const std::string& key, double fallback) const;
  std::vector<long long> integer_list(const std::string& key) const;  ///< "1,2,4"
  bool flag(const std::string& key) const { return flags_.count(key) != 0; }
  /// Throws UsageError when an option outside `known` was given.
  void allow_only(const std::set<std::string>& known) const;

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
};

long long parse_integer(const std::string& text, const std::string& what);
double parse_number(const std::string& text, const std::string& what);

}  // namespace sgdstab::cli
