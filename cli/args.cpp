#include "args.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace sgdstab::cli {

Args::Args(int argc, const char* const* argv, const std::set<std::string>& flags) {
  if (argc < 2) throw UsageError("no command given");
  command_ = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || key.size() < 3)
      throw UsageError("unexpected argument '" + key + "' (options look like --name value)");
    key = key.substr(2);
    const std::size_t eq = key.find('=');
    std::string value;
    if (eq != std::string::npos) {  // --key=value: the same rules as --key value
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      if (key.empty()) throw UsageError("unexpected argument '" + std::string(argv[i]) + "' (no option name)");
    }
    if (values_.count(key) || flags_.count(key)) throw UsageError("option --" + key + " given twice");
    if (flags.count(key)) {
      if (eq != std::string::npos) throw UsageError("option --" + key + " is a flag and takes no value");
      flags_.insert(key);
      continue;
    }
    if (eq == std::string::npos) {
      if (i + 1 >= argc) throw UsageError("option --" + key + " needs a value");
      value = argv[++i];
    }
    values_[key] = value;
  }
}

bool Args::has(const std::string& key) const { return values_.count(key) != 0; }

std::string Args::str(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw UsageError("missing required option --" + key);
  return it->second;
}

std::string Args::str_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? str(key) : fallback;
}

long long parse_integer(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError(what + ": expected an integer, got '" + text + "'");
  return v;
}

double parse_number(const std::string& text, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw UsageError(what + ": expected a finite number, got '" + text + "'");
  return v;
}

long long Args::integer(const std::string& key) const { return parse_integer(str(key), "--" + key); }
long long Args::integer_or(const std::string& key, long long fallback) const {
  return has(key) ? integer(key) : fallback;
}
double Args::number(const std::string& key) const { return parse_number(str(key), "--" + key); }
double Args::number_or(const std::string& key, double fallback) const {
  return has(key) ? number(key) : fallback;
}

std::vector<long long> Args::integer_list(const std::string& key) const {
  std::vector<long long> out;
  std::stringstream ss(str(key));
  std::string tok;
  while (std::getline(ss, tok, ',')) out.push_back(parse_integer(tok, "--" + key));
  if (out.empty()) throw UsageError("--" + key + ": empty list");
  return out;
}

void Args::allow_only(const std::set<std::string>& known) const {
  for (const auto& kv : values_)
    if (!known.count(kv.first)) throw UsageError("unknown option --" + kv.first + " for '" + command_ + "'");
  for (const auto& f : flags_)
    if (!known.count(f)) throw UsageError("unknown option --" + f + " for '" + command_ + "'");
}

}  // namespace sgdstab::cli
