#!/usr/bin/env bash
# The seed paper's CNN experiment (Wu, Wang & Su 2022, section 5) as one
# command: SGD over a grid of (lr, B) from one initialization; at each
# minimum reached, |H|_F, lambda_max, eta*(B), mu and mu_* go to sweep.csv and
# |H|_F against sqrt(B)/lr to an SVG (docs/experiments.md).
#
#   examples/cnn_flatness/run.sh [OUT_DIR]
#
# Data: CIFAR-10 when SGDSTAB_CIFAR10_DIR names a cifar-10-batches-bin
# directory (3 x 32 x 32, the reduced VGG-11: VGG-11 widths / 8), else Fashion-MNIST from the Debian
# package dataset-fashion-mnist (1 x 28 x 28). Extra sweep options can be
# passed in SGDSTAB_SWEEP_OPTIONS (e.g. "--device cuda" on a GPU build).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-examples/cnn_flatness/results}
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -x "$BUILD_DIR/sgdstab" ]; then
  bash scripts/install_deps.sh
  BUILD_DIR=$BUILD_DIR bash scripts/build.sh >&2
fi
if [ -n "${SGDSTAB_CIFAR10_DIR:-}" ]; then
  data=(--data "cifar10:$SGDSTAB_CIFAR10_DIR" --arch vgg11/8 --hidden 64)
else
  bash scripts/install_deps.sh core data
  data=(--data fashion-mnist --arch vgg:8,16 --hidden 32)
fi
# shellcheck disable=SC2086
"$BUILD_DIR/sgdstab" cnn sweep "${data[@]}" --classes 0,1 --per-class 16 --scaling center --seed 0 \
  --lrs 0.004,0.008,0.016,0.032 --batches 1,4,16,32 --residual-tol 1e-3 --max-steps 30000 --log-every 200 \
  --out "$out" \
  ${SGDSTAB_SWEEP_OPTIONS:-}
