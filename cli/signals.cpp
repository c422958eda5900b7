#include "signals.hpp"

#include <signal.h>
#include <unistd.h>

#include "exit_codes.hpp"
#include "sgdstab/interrupt.hpp"

namespace sgdstab::cli {

namespace {

extern "C" void on_signal(int signal_number) {
  if (sgdstab::interrupt_requested()) {  // the second signal: leave now, cleanly
    sgdstab::remove_partial_files();
    ::_exit(interrupted_exit_code(signal_number));
  }
  sgdstab::request_interrupt(signal_number);
}

constexpr int kSignals[] = {SIGINT, SIGTERM};
// Whether each signal was ignored when the program started (read once, at the
// first call, before anything else could change the disposition).
bool g_inherited_ignore[2] = {false, false};
bool g_recorded = false;

}  // namespace

void install_signal_handlers() {
  if (!g_recorded) {
    for (int k = 0; k < 2; ++k) {
      struct sigaction old {};
      sigaction(kSignals[k], nullptr, &old);
      g_inherited_ignore[k] = !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
    }
    g_recorded = true;
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  for (int k = 0; k < 2; ++k) sigaction(kSignals[k], g_inherited_ignore[k] ? &ignore : &action, nullptr);
  // Delivered from now on: `sgdstab cnn ...` blocks both across its exec of
  // sgdstab-cnn (cli/main.cpp), so one sent meanwhile is pending here.
  sigset_t handled;
  sigemptyset(&handled);
  for (int k = 0; k < 2; ++k) sigaddset(&handled, kSignals[k]);
  sigprocmask(SIG_UNBLOCK, &handled, nullptr);
}

bool signal_ignored_at_start(int signal_number) {
  for (int k = 0; k < 2; ++k)
    if (kSignals[k] == signal_number) return g_recorded && g_inherited_ignore[k];
  return false;
}

}  // namespace sgdstab::cli
