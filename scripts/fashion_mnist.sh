#!/usr/bin/env bash
# The Mulayoff & Michaeli (COLT 2024) setup on Fashion-MNIST (docs/experiments.md):
# installs the Debian data set when missing, builds the
# library and the example against the installed package, runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh all data
export BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh >&2
prefix="$PWD/$BUILD_DIR/_install"
cmake --install "$BUILD_DIR" --prefix "$prefix" >/dev/null
cmake -S examples/fashion_mnist_mulayoff -B "$BUILD_DIR/example_fmnist" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$BUILD_DIR/example_fmnist" -j "$(nproc)" >/dev/null
"$BUILD_DIR/example_fmnist/fashion_mnist_mulayoff" "$@"
