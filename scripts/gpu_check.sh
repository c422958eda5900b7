#!/usr/bin/env bash
# The checks of issue #13 that need a GPU, as one run sized for a short
# lease (about 5-8 minutes on 16 cores and one H200; theory/gpu.md):
#   1. configure a CUDA build (SGDSTAB_WITH_CUDA=ON; Torch, Python, MPI off),
#      build the tests and the CLI;
#   2. the GPU tests: Gpu.* (parity with the CPU path for every scheme,
#      C = 1, 2, 3, thresholds and regions) and Cli.Device*;
#   3. eta* on the GPU against the CPU on the clustered Gram class of the
#      docs/performance.md's timings at nC = 4096, and on the GPU at nC = 16384 (the CLI,
#      reduction included), and the GPU benchmarks (BM_ApplyRGpu,
#      BM_ThresholdGpu);
#   4. (GPU_CHECK_CNN=1, when Python's torch has CUDA) the CNN module against
#      that LibTorch: Cnn.DevicesAreExplicit and Cnn.CudaMatchesCpu.
# Writes $OUT/gpu_report.md (OUT defaults to build-gpu/report) and prints it.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${GPU_BUILD_DIR:-build-gpu}
OUTDIR=${OUT:-$BUILD/report}
mkdir -p "$OUTDIR"
REPORT=$OUTDIR/gpu_report.md
LOG=$OUTDIR/gpu_check.log
: >"$LOG"
say() { echo "$*" | tee -a "$REPORT"; }
: >"$REPORT"
say "# sgdstab GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say ""
say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"

t0=$(date +%s)
# GPU_SKIP_BUILD=1: $BUILD already holds tests/sgdstab_tests, sgdstab and
# bench/sgdstab_bench_region (built elsewhere with the CUDA backend, e.g. on a
# machine whose image lacks Eigen/Spectra/Boost; docs/gpu.md "Validation").
if [ "${GPU_SKIP_BUILD:-0}" = 1 ]; then
  say "build: prebuilt binaries in $BUILD"
elif ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSGDSTAB_WITH_CUDA=ON -DSGDSTAB_WITH_TORCH=OFF \
      -DSGDSTAB_PYTHON=OFF -DSGDSTAB_WITH_MPI=OFF -DSGDSTAB_BUILD_BENCH=ON -DSGDSTAB_INSTALL=OFF >>"$LOG" 2>&1 ||
   ! cmake --build "$BUILD" -j "$(nproc)" --target sgdstab_tests sgdstab_cli sgdstab_bench_region >>"$LOG" 2>&1; then
  say "BUILD FAILED (see gpu_check.log)"
  tail -30 "$LOG"
  exit 1
fi
[ "${GPU_SKIP_BUILD:-0}" = 1 ] || say "build: $(( $(date +%s) - t0 )) s"

say ""
say "## GPU tests"
"$BUILD/tests/sgdstab_tests" --gtest_filter='Gpu.*:Cli.Device*' >"$OUTDIR/gpu_tests.txt" 2>&1
tests_rc=$?
grep -E '^\[  (PASSED|FAILED|SKIPPED) |^\[  +OK|^\[  FAILED|GPU not usable|no usable GPU' "$OUTDIR/gpu_tests.txt" | tee -a "$REPORT"
say "tests exit code: $tests_rc"

say ""
say "## eta* timings (clustered Gram: J Gaussian nC x 1.5 nC, each sample's 4 rows scaled by 2^u, u ~ U(-1,1); B = 8, without replacement, tol 1e-10)"
CLI="$BUILD/sgdstab"
if python3 -c 'import numpy' 2>/dev/null; then
  for nc in 4096 16384; do
    k=$OUTDIR/../k$nc.npy
    python3 - "$nc" "$k" <<'PY' >>"$LOG" 2>&1
import sys, numpy as np
nc, path = int(sys.argv[1]), sys.argv[2]
n, c = nc // 4, 4
rng = np.random.default_rng(11)
j = rng.standard_normal((nc, int(1.5 * nc)))
j *= np.repeat(2.0 ** np.random.default_rng(12).uniform(-1, 1, n), c)[:, None]
np.save(path, j @ j.T)
PY
    devices="cuda"
    [ "$nc" -le 4096 ] && devices="cuda cpu"
    for dev in $devices; do
      s0=$(date +%s.%N)
      timeout 240 "$CLI" threshold --gram "$k" --outputs 4 --batch 8 --device "$dev" >"$OUTDIR/t_${nc}_$dev.json" 2>>"$LOG"
      rc=$?
      s1=$(date +%s.%N)
      python3 - "$OUTDIR/t_${nc}_$dev.json" "$nc" "$dev" "$rc" "$s0" "$s1" <<'PY' | tee -a "$REPORT"
import json, sys
path, nc, dev, rc, s0, s1 = sys.argv[1:]
wall = float(s1) - float(s0)
try:
    j = json.load(open(path))
    print(f"- nC = {nc}, --device {dev}: {float(wall):.1f} s wall, eta* = {j['eta_star']:.12g}, "
          f"matvecs {j['matvecs']}, ran on {j['device']}, {j['status']} (exit {rc})")
except Exception as e:
    print(f"- nC = {nc}, --device {dev}: no result (exit {rc}, {e})")
PY
    done
    rm -f "$k"
  done
else
  say "numpy not found: timings skipped"
fi

say ""
say "## GPU benchmarks (bench/bench_region.cpp: one application of R on the GPU, one threshold with --device cuda)"
timeout "${GPU_BENCH_TIMEOUT:-300}" "$BUILD/bench/sgdstab_bench_region" --benchmark_filter='Gpu' >"$OUTDIR/gpu_bench.txt" 2>&1
grep -E 'BM_|error' "$OUTDIR/gpu_bench.txt" | tee -a "$REPORT"

if [ "${GPU_CHECK_CNN:-0}" = 1 ]; then
  say ""
  say "## CNN module on Python's CUDA LibTorch"
  prefix=$(python3 -c 'import torch; assert torch.cuda.is_available(); print(torch.utils.cmake_prefix_path)' 2>>"$LOG")
  if [ -n "$prefix" ] && cmake -S . -B "$BUILD-cnn" -DCMAKE_BUILD_TYPE=Release -DSGDSTAB_WITH_TORCH=ON \
        -DCMAKE_PREFIX_PATH="$prefix" -DSGDSTAB_PYTHON=OFF -DSGDSTAB_WITH_MPI=OFF -DSGDSTAB_BUILD_BENCH=OFF \
        -DSGDSTAB_INSTALL=OFF >>"$LOG" 2>&1 &&
     cmake --build "$BUILD-cnn" -j "$(nproc)" --target sgdstab_cnn_tests >>"$LOG" 2>&1; then
    "$BUILD-cnn/tests/sgdstab_cnn_tests" --gtest_filter='Cnn.DevicesAreExplicit:Cnn.CudaMatchesCpu' 2>&1 |
      grep -E '^\[  (PASSED|FAILED|SKIPPED) |^\[  +OK|^\[  FAILED' | tee -a "$REPORT"
  else
    say "no CUDA torch, or the CNN build failed (see gpu_check.log)"
  fi
fi
say ""
say "total: $(( $(date +%s) - t0 )) s"
exit $tests_rc
