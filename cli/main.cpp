#include <iostream>

#include "app.hpp"
#include "signals.hpp"

int main(int argc, char** argv) {
  sgdstab::cli::install_signal_handlers();
  return sgdstab::cli::run(argc, argv, std::cout, std::cerr);
}
