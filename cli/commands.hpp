#pragma once
#include <iosfwd>

namespace sgdstab::cli {
/// Exit codes of the sgdstab program.
enum ExitCode { kOk = 0, kFailure = 1, kUsage = 2, kNotConverged = 3 };
/// Runs `sgdstab argv[1] ...`; JSON goes to `out`, diagnostics to `err`.
int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
class Args;
/// `sgdstab cnn SUB ...` (cli/cnn_commands.cpp; only in builds with LibTorch).
int cmd_cnn(const Args& args, std::ostream& out, std::ostream& err);
}  // namespace sgdstab::cli
