#pragma once
#include <iosfwd>

#include "exit_codes.hpp"

namespace sgdstab::cli {
/// Runs `sgdstab argv[1] ...`; JSON goes to `out`, diagnostics to `err`.
int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
class Args;
/// `sgdstab cnn SUB ...` (cli/cnn_commands.cpp; only in builds with LibTorch).
int cmd_cnn(const Args& args, std::ostream& out, std::ostream& err);
}  // namespace sgdstab::cli
