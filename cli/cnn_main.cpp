// sgdstab-cnn: the cnn commands (cnn train, cnn analyze, cnn sweep), linked
// with LibTorch. `sgdstab cnn ...` runs it (cli/main.cpp); the options, help,
// checks and exit codes are sgdstab's (cli/app.cpp), only the handlers are
// this program's (docs/cnn.md).
#include <iostream>

#include "app.hpp"
#include "commands.hpp"
#include "signals.hpp"

int main(int argc, char** argv) {
  sgdstab::cli::install_signal_handlers();  // and unblocks what sgdstab blocked across the exec
  return sgdstab::cli::run_subset(argc, argv, std::cout, std::cerr,
                                  {{"cnn train", sgdstab::cli::cmd_cnn_train},
                                   {"cnn analyze", sgdstab::cli::cmd_cnn_analyze},
                                   {"cnn sweep", sgdstab::cli::cmd_cnn_sweep}});
}
