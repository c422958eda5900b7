// libFuzzer target: the sgdstab program's argument parsing (docs/reliability.md).
// The input is split at NUL bytes into argv[1..]; the
// parsing half of a run (cli::check_arguments) selects the command, parses
// and checks the options and reads every given option as every kind of
// value, without running anything. Any exception escaping is a finding: bad
// usage must come back as exit code 2.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "app.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> tokens{"sgdstab"};
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      tokens.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (!cur.empty() || size == 0) tokens.push_back(cur);
  if (tokens.size() > 64) return 0;
  std::vector<const char*> argv;
  for (const std::string& t : tokens) argv.push_back(t.c_str());
  std::ostringstream out, err;
  const int code = sgdstab::cli::check_arguments(static_cast<int>(argv.size()), argv.data(), out, err);
  if (code != 0 && code != 2) __builtin_trap();  // parsing knows only ok and usage
  return 0;
}
