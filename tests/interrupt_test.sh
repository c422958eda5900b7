#!/usr/bin/env bash
# SIGINT / SIGTERM during long commands (issue #15, README "Reliability"):
# the program exits 128 + the signal (130, 143), prints nothing on stdout,
# says "interrupted" on stderr, leaves no temporary or half-written file and
# keeps the last checkpoint whole. Each command below would run for minutes;
# the signal is sent after it has started (and, for `cnn train`, after its
# first checkpoint exists).
# usage: interrupt_test.sh SGDSTAB_BINARY HAS_CNN(0|1)
set -uo pipefail
bin=$1
has_cnn=${2:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A small Gram (n = 6, C = 1): J J^T of a fixed J.
printf '%s\n' "1,0.2,0,0.1" "0.3,1,0.1,0" "0,0.4,1,0.2" "0.1,0,0.5,1" "0.2,0.1,0,0.7" "0,0.3,0.2,0.9" > "$work/j.csv"

# run_and_signal NAME SIGNAL EXPECTED_CODE WAIT_FOR_FILE -- COMMAND...
run_and_signal() {
  local name=$1 sig=$2 expected=$3 wait_file=$4
  shift 5
  local out="$work/$name.out" err="$work/$name.err"
  "$@" > "$out" 2> "$err" &
  local pid=$!
  if [ "$wait_file" != "-" ]; then
    for _ in $(seq 1 600); do [ -s "$wait_file" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    [ -s "$wait_file" ] || { kill -KILL "$pid" 2>/dev/null; cat "$err"; fail "$name: $wait_file never appeared"; }
  fi
  sleep 1
  kill -0 "$pid" 2>/dev/null || { cat "$err"; fail "$name: finished before the signal (make it longer)"; }
  kill "-$sig" "$pid"
  local code=0
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fail "$name: still running 30 s after SIG$sig"; fi
  wait "$pid"; code=$?
  [ "$code" = "$expected" ] || { cat "$err"; fail "$name: exit code $code after SIG$sig, expected $expected"; }
  [ ! -s "$out" ] || fail "$name: something was printed on stdout after SIG$sig: $(head -c 200 "$out")"
  grep -q "interrupted" "$err" || { cat "$err"; fail "$name: stderr does not say 'interrupted'"; }
  if ls "$work" | grep -q '\.tmp\.'; then fail "$name: temporary files left: $(ls "$work" | grep '\.tmp\.')"; fi
  echo "ok: $name: SIG$sig -> exit $code, nothing printed, no temporary file"
}

run_and_signal montecarlo INT 130 - -- "$bin" montecarlo --jacobian "$work/j.csv" --batch 1 --lr 0.1 \
  --steps 1000000 --trajectories 100000 --blocks 1000000 --quiet
run_and_signal montecarlo_term TERM 143 - -- "$bin" montecarlo --jacobian "$work/j.csv" --batch 1 --lr 0.1 \
  --steps 1000000 --trajectories 100000 --blocks 1000000 --quiet
run_and_signal escape INT 130 - -- "$bin" escape --widths 2,8,1 --activation tanh --data teacher --samples 8 \
  --seed 3 --batch 2 --runs 1000000 --escape-steps 100000000 --epsilon 1e-4 --lr-factor 0.7 --quiet

if [ "$has_cnn" = 1 ]; then
  ck="$work/ckpt.npy"
  run_and_signal cnn_train INT 130 "$ck" -- "$bin" cnn train --data synthetic --per-class 4 --arch vgg:2 --hidden 4 \
    --device cpu --lr 1e-7 --batch 2 --max-steps 1000000000 --checkpoint "$ck" --checkpoint-every 20 \
    --save-params "$work/final.npy" --alignment-log "$work/log.csv" --log-every 10 --quiet
  [ ! -e "$work/final.npy" ] || fail "cnn_train: --save-params written by an interrupted run"
  [ ! -e "$work/log.csv" ] || fail "cnn_train: --alignment-log written by an interrupted run"
  # The checkpoint is whole: the program reads it back as the start of a new
  # run (one step: exit 3, "step limit reached", with its JSON; a bad file is exit 1 or 2).
  code=0
  "$bin" cnn train --data synthetic --per-class 4 --arch vgg:2 --hidden 4 --device cpu --lr 1e-7 --batch 2 \
    --max-steps 1 --init-params "$ck" --quiet > "$work/resume.json" 2> "$work/resume.err" || code=$?
  { [ "$code" = 0 ] || [ "$code" = 3 ]; } && grep -q '"params"' "$work/resume.json" ||
    { cat "$work/resume.err"; fail "cnn_train: the kept checkpoint cannot be read back (exit $code)"; }
  echo "ok: cnn_train: checkpoint kept whole, no final outputs"
  run_and_signal cnn_train_term TERM 143 "$ck" -- "$bin" cnn train --data synthetic --per-class 4 --arch vgg:2 \
    --hidden 4 --device cpu --lr 1e-7 --batch 2 --max-steps 1000000000 --checkpoint "$ck" --checkpoint-every 20 --quiet
  mkdir -p "$work/sweep"
  run_and_signal cnn_sweep INT 130 - -- "$bin" cnn sweep --data synthetic --per-class 4 --arch vgg:2 --hidden 4 \
    --device cpu --lrs 1e-7,2e-7 --batches 2 --max-steps 1000000000 --out "$work/sweep" --quiet
  if ls "$work/sweep" | grep -q '\.tmp\.'; then fail "cnn_sweep: temporary files left"; fi
  [ ! -e "$work/sweep/sweep.svg" ] || fail "cnn_sweep: the picture of an interrupted sweep was written"
else
  echo "skip: cnn train / cnn sweep (this build has no LibTorch module)"
fi

# A second signal while the first is being honoured: leave at once, still clean.
"$bin" montecarlo --jacobian "$work/j.csv" --batch 1 --lr 0.1 --steps 1000000 --trajectories 100000 \
  --blocks 1000000 --quiet > "$work/twice.out" 2> "$work/twice.err" &
pid=$!
sleep 1
kill -INT "$pid"; kill -INT "$pid"
wait "$pid"; code=$?
[ "$code" = 130 ] || fail "two SIGINTs: exit code $code, expected 130"
[ ! -s "$work/twice.out" ] || fail "two SIGINTs: output on stdout"
echo "ok: a second SIGINT exits at once (130)"
echo "interrupts: all checks passed"
