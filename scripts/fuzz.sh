#!/usr/bin/env bash
# Fuzzes the readers and the argument parsing (issue #15) with libFuzzer, on
# the sanitizer build of scripts/sanitize.sh (run that first): each target
# first replays its seed corpus (fuzz/corpus/<target>, in the repository),
# then fuzzes for ${FUZZ_SECONDS:-60} s from it. New inputs go to
# ${SANITIZE_BUILD_DIR}/fuzz-corpus (outside the repository); a crash leaves
# its input in ${SANITIZE_BUILD_DIR}/fuzz-crashes and fails the script. The
# figures (executions, coverage) are written to fuzz-report.md there. The
# targets run side by side, one per core.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SANITIZE_BUILD_DIR:-build-sanitize}
SECONDS_EACH=${FUZZ_SECONDS:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
report="$BUILD_DIR/fuzz-report.md"
mkdir -p "$BUILD_DIR/fuzz-crashes"
{
  echo "| target | seconds | executions | exec/s | coverage (edges) | features | corpus |"
  echo "|---|---|---|---|---|---|---|"
} > "$report"
# One target: replay its seeds, then fuzz; its report row goes to fuzz-$t.row.
fuzz_one() {
  local t=$1 bin work log execs rate last cov ft corp
  bin="$BUILD_DIR/fuzz/sgdstab_fuzz_$t"
  work="$BUILD_DIR/fuzz-corpus/$t"
  mkdir -p "$work"
  # Replay: every seed (and every earlier crash input committed there) must pass.
  "$bin" -runs=0 "fuzz/corpus/$t" > "$BUILD_DIR/fuzz-$t-replay.log" 2>&1 ||
    { echo "fuzz: $t: a seed input fails"; tail -40 "$BUILD_DIR/fuzz-$t-replay.log"; return 1; }
  log="$BUILD_DIR/fuzz-$t.log"
  if ! "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz-crashes/$t-" "$work" "fuzz/corpus/$t" > "$log" 2>&1; then
    echo "fuzz: $t: FAILED (input saved under $BUILD_DIR/fuzz-crashes)"; tail -60 "$log"; return 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo 0)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
  corp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || echo "?")
  echo "| $t | $SECONDS_EACH | $execs | $rate | $cov | $ft | $corp |" > "$BUILD_DIR/fuzz-$t.row"
  echo "fuzz: $t: $execs executions, coverage $cov edges, $corp inputs"
}
targets=(npy csv idx cifar cli)
for t in "${targets[@]}"; do
  [ -x "$BUILD_DIR/fuzz/sgdstab_fuzz_$t" ] || { echo "fuzz: $BUILD_DIR/fuzz/sgdstab_fuzz_$t is missing (run scripts/sanitize.sh first)"; exit 1; }
  rm -f "$BUILD_DIR/fuzz-$t.row"
done
# The targets run side by side, one per core (${FUZZ_JOBS:-nproc} at a time):
# each still gets SECONDS_EACH seconds of one core, as when run one after the other.
jobs_max=${FUZZ_JOBS:-$(nproc)}
status=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs_max" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
for t in "${targets[@]}"; do
  if [ -f "$BUILD_DIR/fuzz-$t.row" ]; then cat "$BUILD_DIR/fuzz-$t.row" >> "$report"; else status=1; fi
done
cat "$report"
exit $status
