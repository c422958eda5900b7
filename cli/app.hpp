#pragma once
// The sgdstab program on CLI11: every command, its options with their help,
// and their relations (excludes, needs); parsing errors become exit 2 with a
// message naming the option, nothing on stdout (cli/app.cpp).
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "args.hpp"

namespace sgdstab::cli {

/// Runs `sgdstab argv[1] ...`; JSON goes to `out`, diagnostics to `err`.
/// Returns the exit code (exit_codes.hpp).
int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

/// The parsing half of run(): selects the command, parses and checks the
/// options and reads each given one as every kind of value, but runs
/// nothing (no file is opened). Returns 0 or the usage exit code; help
/// requests print the help to `out`. For the CLI fuzz target.
int check_arguments(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

/// A command's body: the parsed options, stdout, stderr -> exit code.
using CommandHandler = std::function<int(const Args&, std::ostream&, std::ostream&)>;

/// run() restricted to `commands` (names of `sgdstab` commands: their
/// options, help and checks are `sgdstab`'s), each run by the given handler;
/// any other command is a usage error. For sgdstab-mpi.
int run_subset(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
               const std::vector<std::pair<std::string, CommandHandler>>& commands);

}  // namespace sgdstab::cli
