#pragma once
// SIGINT and SIGTERM for the sgdstab program (cli/signals.cpp): the first
// one asks the library to stop (sgdstab::request_interrupt), the command
// then unwinds, writes nothing and exits 128 + the signal; a second one
// removes temporary files of writes in progress and exits at once.

namespace sgdstab::cli {

/// Installs the handlers (idempotent).
void install_signal_handlers();

}  // namespace sgdstab::cli
