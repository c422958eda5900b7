#pragma once
/// \file interrupt.hpp
/// \brief Cooperative interruption of long computations (Ctrl-C, SIGTERM).
///
/// The library installs no signal handler. A program that wants its long
/// calls to stop early calls request_interrupt() -- from a signal handler
/// (it is async-signal-safe), from another thread, or from a Python
/// KeyboardInterrupt -- and every long-running routine (eigensolvers, Monte
/// Carlo, escape runs, training loops) throws sgdstab::interrupted at its
/// next check, at most one operator application or one SGD step later.
/// Nothing is written by a routine that was interrupted; files written
/// before (checkpoints) are complete, because every file is written to a
/// temporary and renamed into place (matrix_io.hpp).
///
/// The flag is process-wide and stays set until clear_interrupt().
/// The sgdstab program maps SIGINT and SIGTERM onto it and exits with
/// 128 + the signal number (130, 143) and no result (cli/signals.cpp).
#include <stdexcept>
#include <string>

namespace sgdstab {

/// Asks every running and future long routine to stop (async-signal-safe;
/// `signal_number` is reported back by interrupted::signal(), 0 when none).
void request_interrupt(int signal_number = 0) noexcept;
/// Whether an interrupt is pending.
bool interrupt_requested() noexcept;
/// The signal number given to the pending request (0 when none or none given).
int interrupt_signal() noexcept;
/// Clears a pending request (a new computation may start).
void clear_interrupt() noexcept;
/// Removes the temporary files of writes in progress (matrix_io.hpp's atomic
/// writes), leaving every destination file as it was before the write.
/// Async-signal-safe: for a signal handler that is about to _exit().
void remove_partial_files() noexcept;

/// Thrown by a long routine that saw a pending interrupt request.
class interrupted : public std::runtime_error {
 public:
  interrupted(const std::string& where, int signal_number)
      : std::runtime_error(where + ": interrupted" +
                           (signal_number > 0 ? " (signal " + std::to_string(signal_number) + ")" : std::string())),
        signal_(signal_number) {}
  int signal() const noexcept { return signal_; }

 private:
  int signal_;
};

}  // namespace sgdstab
