#!/usr/bin/env bash
# The README's two commands in either order: whatever scripts/run.sh (the main
# job) configured in the shared build folder, scripts/test.sh must configure
# it with every test and benchmark on, and ctest must refuse to pass on zero
# tests. Runs the configure step of each script (SGDSTAB_CONFIGURE_ONLY=1) in
# a scratch build folder, run.sh first, then test.sh, then run.sh again.
set -euo pipefail
src=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export BUILD_DIR="$scratch/build" SGDSTAB_CONFIGURE_ONLY=1
cache() { grep -E "^$1:BOOL=" "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2; }
expect() {
  if [ "$(cache "$1")" != "$2" ]; then echo "FAIL: after $3, $1 = $(cache "$1"), expected $2"; exit 1; fi
}
(cd "$src" && bash scripts/run.sh >/dev/null 2>&1)
expect SGDSTAB_BUILD_TESTS OFF "scripts/run.sh"
(cd "$src" && bash scripts/test.sh >/dev/null 2>&1)
expect SGDSTAB_BUILD_TESTS ON "scripts/run.sh then scripts/test.sh"
expect SGDSTAB_BUILD_BENCH ON "scripts/run.sh then scripts/test.sh"
grep -q -- "--no-tests=error" "$src/scripts/test.sh" || { echo "FAIL: scripts/test.sh runs ctest without --no-tests=error"; exit 1; }
# ctest itself: a folder with no tests must fail under that flag.
mkdir -p "$scratch/empty" && : > "$scratch/empty/CTestTestfile.cmake"
if (cd "$scratch/empty" && ctest --no-tests=error >/dev/null 2>&1); then
  echo "FAIL: ctest --no-tests=error passed with no tests"; exit 1
fi
echo "scripts: run.sh then test.sh configures every test; ctest fails on zero tests"
