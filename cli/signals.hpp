#pragma once
// SIGINT and SIGTERM for the sgdstab programs (cli/signals.cpp; docs/
// reliability.md, "Signals"): the first one asks the library to stop
// (sgdstab::request_interrupt), the command then unwinds at its next poll,
// writes nothing and exits 128 + the signal; a second one removes temporary
// files of writes in progress and exits at once.
//
// A signal that the program inherited as ignored stays ignored for the whole
// run: the shell convention for background jobs (a non-interactive shell
// starts `cmd &` with SIGINT ignored) and for nohup-like launchers. Without
// this rule such a SIGINT would be ignored while the dynamic loader maps the
// libraries and handled afterwards, i.e. lost or honoured depending on the
// machine's speed. Before main() runs, a signal that is not ignored takes its
// default action (the process ends with the same status, 128 + the signal,
// having written nothing).

namespace sgdstab::cli {

/// Installs the handlers for the signals that were not ignored when the
/// program started, then unblocks both (a signal that arrived while they were
/// blocked, across `sgdstab cnn`'s exec of sgdstab-cnn, is delivered then);
/// the first call records which were ignored (call it first thing in main).
/// Later calls re-install the same dispositions (after a library such as
/// PETSc has installed its own).
void install_signal_handlers();

/// Whether `signal_number` (SIGINT or SIGTERM) was ignored at the first call
/// of install_signal_handlers() and is therefore left ignored.
bool signal_ignored_at_start(int signal_number);

}  // namespace sgdstab::cli
