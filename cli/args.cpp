#include "args.hpp"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace sgdstab::cli {

namespace {
const CLI::Option* find(const CLI::App& app, const std::string& key) {
  return app.get_option_no_throw("--" + key);
}
}  // namespace

bool Args::has(const std::string& key) const {
  const CLI::Option* opt = find(*app_, key);
  return opt != nullptr && opt->count() > 0;
}

std::string Args::str(const std::string& key) const {
  const CLI::Option* opt = find(*app_, key);
  if (opt == nullptr || opt->count() == 0 || opt->results().empty())
    throw UsageError("missing required option --" + key);
  return opt->results().front();
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

std::vector<std::string> Args::all(const std::string& key) const {
  const CLI::Option* opt = find(*app_, key);
  if (opt == nullptr) return {};
  return opt->results();
}

std::vector<long long> Args::integer_list(const std::string& key) const {
  std::vector<long long> out;
  std::stringstream ss(str(key));
  std::string tok;
  while (std::getline(ss, tok, ',')) out.push_back(parse_integer(tok, "--" + key));
  if (out.empty()) throw UsageError("--" + key + ": empty list");
  return out;
}

}  // namespace sgdstab::cli
