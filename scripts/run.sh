#!/usr/bin/env bash
# The main job: installs what the core needs when missing (scripts/
# install_deps.sh core: compiler, CMake, Eigen, Spectra, Boost.Math, OpenBLAS,
# nlohmann-json, CLI11), builds the library and the sgdstab program only, and
# runs `sgdstab demo` (eta*(B) over B = 1, 2, 4, ..., n on a built-in problem,
# with 2/lambda_max). The JSON goes to stdout and to results/demo.json; the
# stability region of the same problem (all three schemes, with bands and
# bounds) to results/demo_region.svg, next to it. The optional modules (MPI,
# LibTorch, Python, CUDA) stay AUTO: built by scripts/test.sh, which installs
# them, not by this job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh core >&2  # stdout carries only the JSON result
BUILD_DIR=${BUILD_DIR:-build} SGDSTAB_BUILD_TARGET=sgdstab_cli \
  bash scripts/build.sh -DSGDSTAB_BUILD_TESTS=OFF -DSGDSTAB_BUILD_BENCH=OFF >&2
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
RESULTS=${SGDSTAB_RESULTS_DIR:-results}
mkdir -p "$RESULTS"
status=0
"${BUILD_DIR:-build}/sgdstab" demo --plot "$RESULTS/demo_region.svg" "$@" >"$RESULTS/demo.json" || status=$?
cat "$RESULTS/demo.json"
echo "sgdstab: wrote $RESULTS/demo.json and $RESULTS/demo_region.svg" >&2
exit "$status"
