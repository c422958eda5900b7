#!/usr/bin/env bash
# The momentum experiment of docs/momentum.md (issue #16): an interpolating minimum of a
# one-hidden-layer ReLU network (width 1024, biases) on Fashion-MNIST classes
# 0-3 x 64 images (n = 256, C = 4, nC = 1024), then eta*(B) without
# replacement for plain SGD and beta = 0.5, 0.9, 0.99 (heavy-ball and
# Nesterov) beside the full-batch limits: a table on stdout and
# results/momentum_region.svg. Needs a build with the Python package
# (scripts/build.sh) and the Debian package dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/install_deps.sh core data
mkdir -p results
"$BUILD_DIR/sgdstab" minimum --widths 784,1024,4 --bias --activation relu --data fashion-mnist \
  --classes 0,1,2,3 --per-class 64 --seed 1 --save-gram results/fmnist_gram.npy >results/fmnist_minimum.json
PYTHONPATH="$BUILD_DIR/python" /usr/bin/python3 examples/python/momentum_region.py results/fmnist_gram.npy 4 \
  --svg results/momentum_region.svg
