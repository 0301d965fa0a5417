#!/usr/bin/env bash
# sigkill_resume.sh MOCO WORK_DIR [METHOD FLAGS...] - a pretraining run killed with SIGKILL at random
# moments, several times, always resumes from its last checkpoint, no checkpoint file is ever left
# half-written, and the run ends bit for bit where an uninterrupted one does.
#
# Each round starts (or resumes) a tiny CPU run that checkpoints after every step, kills it after a
# random delay, then checks that every *.safetensors in checkpoints/ reads back whole (`moco info`
# verifies the header and every byte range) and that the last checkpoint's step never goes back.
# A final run resumes to the end and must reach the requested step; then an uninterrupted run of the
# same flags must have logged the same loss at every step, to the last digit of metrics.jsonl.
# METHOD FLAGS replace the default MoCo v2 flags (a small queue, an embedding of 8, the MLP head),
# e.g. `--method simclr --simclr-dim 8 --optimizer lars --strategy hp --num-nonsem 1`.
set -euo pipefail
MOCO=$1
WORK=$2
rm -rf "$WORK"
mkdir -p "$WORK"
"$MOCO" synth "$WORK/data" --classes 2 --train-per-class 8 --val-per-class 1 --size 24 --force >/dev/null
SAVE="$WORK/run"
TARGET=12
method=("${@:3}")
[ ${#method[@]} -gt 0 ] || method=(--moco-k 16 --moco-dim 8 --mlp)
common=(pretrain "$WORK/data" -a resnet18 --small-stem -b 8 --bn-groups 2 "${method[@]}" --image-size 16
        --epochs 100 -j 1 --device cpu --max-steps $TARGET --seed 3 -p 1)
args=("${common[@]}" --save-dir "$SAVE" --save-freq-steps 1 --resume auto)

last_step() {
  local f="$SAVE/checkpoints/last.safetensors"
  if [ -f "$f" ]; then "$MOCO" info "$f" | sed -n 's/^  step: \([0-9]*\)$/\1/p'; else echo 0; fi
}

# Waits (up to a minute) until FILE exists or contains PATTERN.
wait_for() {
  for _ in $(seq 600); do
    if [ -n "${2:-}" ]; then grep -q "$2" "$1" 2>/dev/null && return 0; else [ -e "$1" ] && return 0; fi
    sleep 0.1
  done
}
random_delay() { awk -v r="$RANDOM" -v lo="$1" -v hi="$2" 'BEGIN { printf "%.2f", lo + (hi - lo) * r / 32767 }'; }

previous=0
kills=0
for round in 1 2 3 4 5 6; do
  log="$WORK/round$round.log"
  "$MOCO" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  if [ "$round" -eq 1 ]; then
    wait_for "$SAVE/checkpoints/last.safetensors"  # the first kill comes after a checkpoint exists
    sleep "$(random_delay 0 1)"
  elif [ $((round % 2)) -eq 0 ]; then
    wait_for "$log" "pretraining "                  # in training: between or inside checkpoint writes
    sleep "$(random_delay 0 2)"
  else
    sleep "$(random_delay 0.2 3)"                   # anywhere, start-up included
  fi
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  for f in "$SAVE"/checkpoints/*.safetensors; do
    [ -e "$f" ] || continue
    "$MOCO" info "$f" >/dev/null || { echo "FAIL: round $round left a damaged checkpoint $f"; exit 1; }
  done
  step=$(last_step)
  if [ "$step" -lt "$previous" ]; then echo "FAIL: round $round: last checkpoint went back from step $previous to $step"; exit 1; fi
  echo "round $round: killed=$kills, last checkpoint at step $step"
  previous=$step
done
"$MOCO" "${args[@]}" >"$WORK/final.log" 2>&1 || { cat "$WORK/final.log"; echo "FAIL: the final resume failed"; exit 1; }
step=$(last_step)
[ "$step" -eq "$TARGET" ] || { echo "FAIL: the final run stopped at step $step, not $TARGET"; exit 1; }
grep -q "resumed from" "$WORK/final.log" || { echo "FAIL: the final run did not resume"; exit 1; }

# Every step's loss, as metrics.jsonl wrote it: "step loss" per line.
losses() { sed -n 's/.*"kind":"step","epoch":[0-9]*,"step":\([0-9]*\),"batch":[0-9]*,"loss":\([^,]*\),.*/\1 \2/p' "$1"; }
"$MOCO" "${common[@]}" --save-dir "$WORK/straight" >"$WORK/straight.log" 2>&1 ||
  { cat "$WORK/straight.log"; echo "FAIL: the uninterrupted run failed"; exit 1; }
[ "$(losses "$WORK/straight/metrics.jsonl" | wc -l)" -eq "$TARGET" ] || { echo "FAIL: the uninterrupted run logged no losses"; exit 1; }
if ! diff <(losses "$SAVE/metrics.jsonl") <(losses "$WORK/straight/metrics.jsonl") >"$WORK/losses.diff"; then
  cat "$WORK/losses.diff"
  echo "FAIL: the killed and resumed run's losses differ from the uninterrupted run's (killed < > uninterrupted)"
  exit 1
fi
echo "PASS: $kills kills, every checkpoint whole, resumed to step $TARGET with every loss equal to the uninterrupted run's"
