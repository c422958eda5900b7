#!/usr/bin/env bash
# Configures and builds sgdstab (Release) into ${BUILD_DIR:-build}: every
# target, or only ${SGDSTAB_BUILD_TARGET} when set (scripts/run.sh builds the
# program alone).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
# SGDSTAB_CONFIGURE_ONLY=1: stop after configuring (tests/scripts_test.sh uses it).
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
target=()
[ -z "${SGDSTAB_BUILD_TARGET:-}" ] || target=(--target "$SGDSTAB_BUILD_TARGET")
cmake --build "$BUILD_DIR" -j "$(nproc)" "${target[@]}"
