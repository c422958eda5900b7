// sgdstab: the command-line program (docs/cli.md).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

#include "app.hpp"
#include "exit_codes.hpp"
#include "signals.hpp"

namespace {

#ifdef SGDSTAB_CNN_PROGRAM
// `sgdstab cnn train|analyze|sweep` runs sgdstab-cnn, the program linked with
// LibTorch, from this program's folder, with the same arguments: the other
// commands then never load LibTorch (about 0.65 s of every start). SIGINT and
// SIGTERM are blocked across the exec, so one sent meanwhile is pending in
// sgdstab-cnn and honoured once its handlers are installed; dispositions are
// untouched (no handler is installed here), so an inherited SIG_IGN is kept.
bool is_cnn_run(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) != "cnn") return false;
  const std::string sub = argv[2];
  return sub == "train" || sub == "analyze" || sub == "sweep";
}

int exec_cnn_program(char** argv) {
  sigset_t both;
  sigemptyset(&both);
  sigaddset(&both, SIGINT);
  sigaddset(&both, SIGTERM);
  sigprocmask(SIG_BLOCK, &both, nullptr);
  std::string path = SGDSTAB_CNN_PROGRAM;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    const std::string exe(self, static_cast<std::size_t>(n));
    path = exe.substr(0, exe.rfind('/') + 1) + SGDSTAB_CNN_PROGRAM;
  }
  execv(path.c_str(), argv);
  const int e = errno;
  std::cerr << "sgdstab: cnn: cannot start " << path << " (the program of the cnn commands, linked with LibTorch; "
            << "it is built and installed beside sgdstab): " << std::strerror(e) << "\n";
  sigprocmask(SIG_UNBLOCK, &both, nullptr);
  return sgdstab::cli::exit_code(sgdstab::cli::Exit::failure);
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef SGDSTAB_CNN_PROGRAM
  if (is_cnn_run(argc, argv)) return exec_cnn_program(argv);
#endif
  sgdstab::cli::install_signal_handlers();
  return sgdstab::cli::run(argc, argv, std::cout, std::cerr);
}
