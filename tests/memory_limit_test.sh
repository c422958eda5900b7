#!/usr/bin/env bash
# Memory the budget checks cannot see in /proc/meminfo (docs/reliability.md,
# "Memory"), under `ulimit -v` (RLIMIT_AS) in a subshell:
#  1. `region --engine auto --memory-limit` above what the ulimit allows: the
#     exact region's allocation fails late (std::bad_alloc); auto falls back
#     to the band, says why on stderr and in engine_reason, and its bands are
#     those of `--engine band` (same seed) to the last digit.
#  2. The same without --memory-limit: the band either way (chosen up front
#     from the ulimit's room, or after the failed attempt), the same bands.
#  3. `--engine exact` under the same limit: exit 1 with a message naming
#     the memory, no stdout, no traceback.
#  4. A .npy file larger than the room (a sparse 2 GiB file): exit 1 naming
#     the file and the memory, never "truncated".
# Every run has a hard timeout: Debian 12's OpenBLAS (0.3.21) retries a
# failed buffer allocation forever (OpenBLAS issue 5289, fixed in 0.3.30), so
# the limit leaves the band's BLAS buffers room (one BLAS thread). Address
# sanitizers reserve terabytes of address space: scripts/sanitize.sh leaves
# this test out.
# usage: memory_limit_test.sh SGDSTAB_BINARY PYTHON3
set -uo pipefail
bin=$1
py=${2:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$py" -c "import numpy" 2>/dev/null || { echo "SKIP: numpy is missing"; exit 77; }

# A Gram of rank 1536 (18 MiB): the exact region's shared subspace alone
# needs about 1.3 GiB (64 vectors of length r(r + 1)/2), the band about
# 100 MiB beside the program's ~250 MiB of address space.
"$py" - "$work" <<'EOF' || fail "writing the test Gram"
import sys, numpy as np
rng = np.random.default_rng(3)
j = rng.standard_normal((1536, 2000)) / np.sqrt(2000.0)
np.save(sys.argv[1] + "/gram.npy", j @ j.T)
# A valid header for 16384 x 16384 float64 and a sparse body: 2 GiB on the
# file system's books, nothing on its disk.
hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (16384, 16384), }"
hdr += " " * (118 - len(hdr)) + "\n"
with open(sys.argv[1] + "/big.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode())
    f.truncate(128 + 16384 * 16384 * 8)
EOF
# One BLAS thread and two malloc arenas (each further arena reserves 64 MiB
# of address space). The limit is sized for the project's machines (2 to 4
# cores): the library's own threads (up to 8) each add a stack and may each
# need an OpenBLAS buffer of 128 MiB, so on larger machines the band could
# meet OpenBLAS's endless retry under this limit; the test is skipped there.
if [ "$(nproc)" -gt 4 ]; then
  echo "SKIP: $(nproc) cores: the limit is sized for 2 to 4"
  exit 77
fi
limit_kib=800000
export OPENBLAS_NUM_THREADS=1 MALLOC_ARENA_MAX=2
run() {  # run NAME ARGS...: the program under the limit, stdout and stderr kept, exit code in $rc
  local name=$1
  shift
  (ulimit -v "$limit_kib" && exec timeout -s KILL 300 "$bin" "$@") >"$work/$name.json" 2>"$work/$name.err"
  rc=$?
  [ "$rc" -ne 137 ] || fail "$name: killed after 300 s (a hang under the limit?)"
}
args=(region --gram "$work/gram.npy" --batches 1,16,256,1536 --sampling with,without --seed 5)

run band "${args[@]}" --engine band
[ "$rc" -eq 0 ] || fail "band: exit $rc: $(cat "$work/band.err")"
run late "${args[@]}" --memory-limit 8192
[ "$rc" -eq 0 ] || fail "late fallback: exit $rc: $(cat "$work/late.err")"
grep -q "the exact region does not fit" "$work/late.err" || fail "late fallback: stderr does not say so: $(cat "$work/late.err")"
run auto "${args[@]}"
[ "$rc" -eq 0 ] || fail "auto: exit $rc: $(cat "$work/auto.err")"

"$py" - "$work" <<'EOF' || fail "the fallback's bands"
import json, sys
w = sys.argv[1]
band, late, auto = (json.load(open(f"{w}/{n}.json")) for n in ("band", "late", "auto"))
assert late["engine"] == "band", late["engine"]
assert late["engine_reason"].startswith("the exact region ran out of memory: an allocation failed"), late["engine_reason"]
assert auto["engine"] == "band", auto["engine"]
def sides(j):
    return [(c["sampling"], p["batch"], p["eta_low"], p["eta_high"]) for c in j["curves"] for p in c["points"]]
assert len(sides(band)) == 8, sides(band)
assert sides(late) == sides(band), (sides(late), sides(band))
assert sides(auto) == sides(band), (sides(auto), sides(band))
assert all(0 < lo <= hi for _, _, lo, hi in sides(band))
print("fallback:", late["engine_reason"])
print("auto:", auto["engine_reason"])
EOF

run exact region --gram "$work/gram.npy" --batches 1,16 --engine exact --memory-limit 8192
[ "$rc" -eq 1 ] || fail "--engine exact: exit $rc, expected 1: $(cat "$work/exact.err")"
[ ! -s "$work/exact.json" ] || fail "--engine exact printed a result"
grep -q "out of memory\|too large" "$work/exact.err" || fail "--engine exact: $(cat "$work/exact.err")"

run big threshold --gram "$work/big.npy" --batch 1
[ "$rc" -eq 1 ] || fail "big file: exit $rc, expected 1: $(cat "$work/big.err")"
grep -q "big.npy: reading the file needs about 2.0 GiB" "$work/big.err" || fail "big file: $(cat "$work/big.err")"
! grep -q "truncated" "$work/big.err" || fail "big file called truncated: $(cat "$work/big.err")"
echo "memory limits: OK ($(head -1 "$work/big.err"))"
