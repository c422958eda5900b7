#pragma once
// The exit codes of the sgdstab program: one table, keyed by the library's
// Status and Verdict (types.hpp) and by the kinds of error. README,
// "Exit codes", and `sgdstab --help` print this table.
#include <string>

#include "sgdstab/types.hpp"

namespace sgdstab::cli {

enum class Exit : int {
  ok = 0,           ///< the result is printed and can be trusted
  failure = 1,      ///< an I/O error (cannot read or write a file) or a problem too large for memory
  usage = 2,        ///< bad usage or bad input (options, shapes, NaN, B outside 1..n, ...); nothing on stdout
  not_trusted = 3,  ///< a numerical result is not to be trusted (see its status); JSON printed when one exists
  disagree = 4      ///< (montecarlo) the Monte Carlo estimates disagree with the exact answer
};

/// The exit code of a result with this status: ok for converged, not_trusted otherwise.
int exit_code(Status status);
/// The exit code of a Monte Carlo verdict: agree ok, inconclusive not_trusted, disagree disagree.
int exit_code(Verdict verdict);
inline int exit_code(Exit e) { return static_cast<int>(e); }

/// The exit code of a run stopped by signal `signal_number` (SIGINT, SIGTERM): 128 + it.
inline int interrupted_exit_code(int signal_number) { return 128 + (signal_number > 0 ? signal_number : 2); }

/// The table as help text, one line per code.
std::string exit_code_help();

}  // namespace sgdstab::cli
