#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs `sgdstab demo`
# (eta*(B) over B = 1, 2, 4, ..., n on a built-in problem, with 2/lambda_max).
# The JSON goes to stdout and to results/demo.json; the stability region of
# the same problem (all three schemes, with bands and bounds) to
# results/demo_region.svg, next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh >&2  # stdout carries only the JSON result
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh -DSGDSTAB_BUILD_TESTS=OFF -DSGDSTAB_BUILD_BENCH=OFF >&2
[ -z "${SGDSTAB_CONFIGURE_ONLY:-}" ] || exit 0
RESULTS=${SGDSTAB_RESULTS_DIR:-results}
mkdir -p "$RESULTS"
status=0
"${BUILD_DIR:-build}/sgdstab" demo --plot "$RESULTS/demo_region.svg" "$@" >"$RESULTS/demo.json" || status=$?
cat "$RESULTS/demo.json"
echo "sgdstab: wrote $RESULTS/demo.json and $RESULTS/demo_region.svg" >&2
exit "$status"
