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

}  // namespace

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace sgdstab::cli
