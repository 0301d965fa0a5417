#!/usr/bin/env bash
# step_scaling.sh [WORK_DIR] - the training throughput of `moco pretrain` on this machine's CPU,
# one process against two under mpirun, at the same global batch and the same model.
#
# Three runs of the same MoCo v2 pretraining (ResNet-18 with the small stem, 32 px, global batch
# 16, K = 256, -j 1 decoding thread per process) on a small synthetic dataset:
#   1 process,  OMP_NUM_THREADS=2     the whole machine to one process (what one would run)
#   1 process,  OMP_NUM_THREADS=1     one core: the per-core baseline of the 2-process run
#   2 processes (mpirun -np 2), OMP_NUM_THREADS=1 each: the data-parallel run, 8 images per rank
# The BatchNorm statistics are alike in all three: --bn-groups 2 in one process (2 virtual GPUs of
# 8), --bn-groups 1 per rank under mpirun (2 ranks of 8), so the three runs compute the same steps
# (the last loss is printed as a check) and differ only in how the work is spread.
#
# Throughput: img_per_s of each "kind":"step" line of SAVE_DIR/metrics.jsonl (the trainer logs one
# per window of -p steps, over the global batch, step time only: checkpoints and start-up are not
# in it). The first window is warm-up and skipped; the rest are combined as total images / total
# seconds, each window's seconds being its images / img_per_s. ms/step = 1000 x batch / img/s.
#
# Environment: MOCO (default build/tools/moco), STEPS (--max-steps, default 20), PRINT_FREQ
# (window length, default 4), MPIRUN_FLAGS (default: --bind-to none, so that each rank's decoding
# thread may run on either core, as in the one-process runs). Run it from the repository root;
# on a shared machine hold the build lock so that no build runs beside it:
#   flock /tmp/engine-build.lock bash bench/dist/step_scaling.sh
set -euo pipefail
export LC_ALL=C
MOCO=${MOCO:-build/tools/moco}
WORK=${1:-${TMPDIR:-/tmp}/step-scaling}
STEPS=${STEPS:-20}
PRINT_FREQ=${PRINT_FREQ:-4}
BATCH=16
read -r -a MPIRUN_EXTRA <<<"${MPIRUN_FLAGS:---bind-to none}"
[ -x "$MOCO" ] || { echo "no $MOCO: build it first (cmake --build build --target moco)" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK"
"$MOCO" synth "$WORK/data" --classes 4 --train-per-class 32 --val-per-class 2 --size 64 --force >"$WORK/synth.log"
flags=(pretrain "$WORK/data" -a resnet18 --small-stem --image-size 32 -b "$BATCH" --moco-k 256 --moco-dim 64 --mlp
       --moco-m 0.99 --moco-t 0.2 --lr 0.06 --epochs 100 -j 1 --device cpu --seed 0 -p "$PRINT_FREQ"
       --max-steps "$STEPS")
echo "moco ${flags[*]} --save-dir DIR --bn-groups G"
echo "dataset: moco synth --classes 4 --train-per-class 32 --val-per-class 2 --size 64 (128 training images,"
echo "$((128 / BATCH)) steps per epoch); $STEPS steps, windows of $PRINT_FREQ, the first skipped as warm-up"
echo

# run NAME PROCS THREADS BN_GROUPS: one pretraining into $WORK/NAME; appends its row to ROWS.
ROWS=()
run() {
  local name=$1 procs=$2 threads=$3 groups=$4 save=$WORK/$1 t0 wall
  t0=$(date +%s.%N)
  if [ "$procs" = 1 ]; then
    OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=passive "$MOCO" "${flags[@]}" --save-dir "$save" --bn-groups "$groups" \
      >"$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; echo "FAIL: $name" >&2; exit 1; }
  else
    mpirun --allow-run-as-root --oversubscribe -np "$procs" "${MPIRUN_EXTRA[@]}" -x OMP_NUM_THREADS="$threads" \
      -x OMP_WAIT_POLICY=passive "$MOCO" "${flags[@]}" --save-dir "$save" --bn-groups "$groups" \
      >"$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; echo "FAIL: $name" >&2; exit 1; }
  fi
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  # "step img_per_s loss" per logged window, then the combined rate of all windows but the first.
  sed -n 's/.*"kind":"step",.*"step":\([0-9]*\),.*"loss":\([^,]*\),.*"img_per_s":\([^,]*\),.*/\1 \3 \2/p' \
    "$save/metrics.jsonl" >"$WORK/$name.windows"
  ROWS+=("$(awk -v name="$name" -v procs="$procs" -v threads="$threads" -v b=$BATCH -v wall="$wall" '
    { n = $1 - prev; prev = $1; loss = $3
      if (NR > 1) { images += n * b; seconds += n * b / $2; windows++ } }
    END { if (seconds <= 0) { print name " no windows after the first"; exit }
          printf "%-32s %5d %7d %8.2f %9.1f %7d %8s %10.4f\n", name, procs, threads, images / seconds,
                 1000 * b * seconds / images, windows, wall, loss }' "$WORK/$name.windows")")
}

run 1proc-2threads 1 2 2
run 1proc-1thread 1 1 2
run 2procs-1thread-each 2 1 1

printf '%-32s %5s %7s %8s %9s %7s %8s %10s\n' run procs threads img/s ms/step windows wall_s window_loss
printf '%s\n' "${ROWS[@]}"
rate() { printf '%s\n' "${ROWS[@]}" | awk -v r="$1" '$1 == r { print $4 }'; }
two=$(rate 2procs-1thread-each) one2=$(rate 1proc-2threads) one1=$(rate 1proc-1thread)
awk -v two="$two" -v one2="$one2" -v one1="$one1" 'BEGIN {
  printf "\n2 processes / 1 process with 2 threads (same cores): %.2fx\n", two / one2
  printf "2 processes / 1 process with 1 thread (per-core):    %.2fx (scaling efficiency %.0f%% of the ideal 2x)\n",
         two / one1, 50 * two / one1
  printf "1 process, 2 threads / 1 thread (OpenMP on 2 cores): %.2fx\n", one2 / one1 }'
