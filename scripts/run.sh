#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs `sgdstab demo`
# (eta*(B) over B = 1, 2, 4, ..., n on a built-in problem, with 2/lambda_max).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh >&2  # stdout carries only the JSON result
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh -DSGDSTAB_BUILD_TESTS=OFF -DSGDSTAB_BUILD_BENCH=OFF >&2
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
"${BUILD_DIR:-build}/sgdstab" demo "$@"
