#!/usr/bin/env bash
# distributed_faults.sh MOCO MPIEXEC WORK_DIR - a 2-rank CPU pretraining job that meets a fault ends
# every rank within 60 seconds with a message that says what happened and which rank, never hangs,
# and then resumes from its last checkpoint to the end.
#
# Faults (MOCO_TEST_FAULT=KIND@STEP:RANK makes rank RANK fail at step STEP, tools/cmd_pretrain.cpp):
#   nan    rank 1's batch becomes NaN: the loss averaged over the ranks is NaN on both, and both stop
#          at the same read with the NaN error
#   throw  rank 1 throws: it names itself and calls MPI_Abort, which ends rank 0
#   hang   rank 1 stops answering: rank 0's watchdog (--collective-timeout 5) ends it, and mpirun
#          then ends rank 1
#   kill   rank 1 gets SIGKILL mid-run: mpirun names it and ends rank 0
set -euo pipefail
MOCO=$1
MPIEXEC=$2
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
"$MOCO" synth "$WORK/data" --classes 2 --train-per-class 8 --val-per-class 1 --size 24 --force >/dev/null
export OMP_NUM_THREADS=1
mpi=("$MPIEXEC" --allow-run-as-root --oversubscribe -np 2)

fail() { echo "FAIL: $*"; exit 1; }

# Starts the job for fault $1 in the background: a run long enough for a kill to land mid-way.
start_job() {
  local save="$WORK/$1" epochs=${2:-3}
  "${mpi[@]}" "$MOCO" pretrain "$WORK/data" --save-dir "$save" -a resnet18 --small-stem -b 4 --moco-k 16 \
    --moco-dim 8 --mlp --image-size 16 --epochs "$epochs" -j 1 --device cpu --seed 3 -p 1 --save-freq-steps 1 \
    --collective-timeout 5 --resume auto >"$WORK/$1.log" 2>&1 &
  job=$!
}

# Waits for the job; it must have failed within 60 s of `since` and printed pattern $2.
expect_ended() {
  local name=$1 pattern=$2 since=$3 status=0
  wait "$job" || status=$?
  local took=$(( $(date +%s) - since ))
  [ "$status" -ne 0 ] || fail "$name: the job exited 0 after a fault"
  [ "$took" -le 60 ] || fail "$name: the job took ${took}s to end after the fault (limit 60 s)"
  grep -q -E "$pattern" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no message matching '$pattern'"; }
  echo "$name: every rank ended ${took}s after the fault (exit $status): $(grep -m1 -o -E "$pattern" "$WORK/$name.log")"
}

# The job resumes from its last checkpoint to the end, without the fault.
expect_resumes() {
  local name=$1 epochs=${2:-3}
  unset MOCO_TEST_FAULT
  start_job "$name" "$epochs"
  wait "$job" || { cat "$WORK/$name.log"; fail "$name: the resumed job failed"; }
  grep -q "resumed from .*last.safetensors" "$WORK/$name.log" || fail "$name: the job did not resume"
  grep -q "done: epoch $epochs," "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: the resumed job did not finish"; }
  echo "$name: resumed and finished: $(grep -o 'done: epoch [0-9]*, step [0-9]*' "$WORK/$name.log")"
}

for fault in nan throw hang; do
  export MOCO_TEST_FAULT="$fault@5:1"
  start=$(date +%s)
  start_job "$fault"
  case $fault in
    nan) expect_ended nan "rank [01] of 2: .*the loss became NaN at epoch 1, batch 1 \(step 5\)" "$start" ;;
    throw) expect_ended throw "rank 1 of 2: .*MOCO_TEST_FAULT: the injected failure at step 5" "$start" ;;
    hang) expect_ended hang "rank 0 of 2: the [a-z -]+ has waited [0-9]+ s for the other ranks" "$start" ;;
  esac
  expect_resumes "$fault"
done

# SIGKILL of rank 1 once it has checkpointed a few steps.
unset MOCO_TEST_FAULT
start_job kill 100
for _ in $(seq 600); do
  step=$( [ -f "$WORK/kill/checkpoints/last.safetensors" ] && "$MOCO" info "$WORK/kill/checkpoints/last.safetensors" 2>/dev/null | sed -n 's/^  step: \([0-9]*\)$/\1/p' || true)
  [ "${step:-0}" -ge 4 ] && break
  sleep 0.1
done
rank1=""
for pid in $(pgrep -f "save-dir $WORK/kill "); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=1$'; then rank1=$pid; fi
done
[ -n "$rank1" ] || fail "kill: found no process of rank 1"
start=$(date +%s)
kill -9 "$rank1"
expect_ended kill "rank 1 .*(exited on signal 9|Killed)" "$start"
expect_resumes kill 4
echo "PASS: nan, throw, hang and kill each ended the job and it resumed"
