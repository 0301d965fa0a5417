#!/usr/bin/env bash
# The synthetic-foreground saliency report: how well each saliency source finds the
# object where the true foreground is known, after a short plain MoCo v2 pretraining and after one
# step, so the two tables show what the training changed.
#   bench/ssl/run_saliency_report.sh [BUILD_DIR] [WORK_DIR] [STEPS] [N]
# BUILD_DIR holds tools/moco and bench/saliency_report (nothing is built here). WORK_DIR receives
# the dataset (written by `moco synth` when missing: 10 classes x 64 train + 20 val images of 64
# pixels) and the two runs. STEPS: optimizer steps of the short pretraining (32 is about five
# minutes on 2 CPU cores: a step of ResNet-18 at 64 pixels, batch 32, took 9 s there, 18 s while
# other builds shared the cores).
# N: evaluation images. Extra arguments of saliency_report (e.g. --pretrained FILE) go in
# $REPORT_ARGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${1:-build}
WORK=${2:-/tmp/saliency_report}
STEPS=${3:-32}
N=${4:-200}
DATA="$WORK/synth64"
MOCO="$BUILD_DIR/tools/moco"
REPORT="$BUILD_DIR/bench/saliency_report"
for tool in "$MOCO" "$REPORT"; do
  [ -x "$tool" ] || { echo "missing $tool: build the targets moco and saliency_report in $BUILD_DIR" >&2; exit 1; }
done
mkdir -p "$WORK"
if [ ! -e "$DATA" ]; then
  "$MOCO" synth "$DATA" --classes 10 --train-per-class 64 --val-per-class 20 --size 64
fi
echo "== $(date -u +%F) $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(nproc) cpus: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

# Plain MoCo v2 (no masking) as the CPU runs of bench/results: ResNet-18 with the small stem at 64 pixels.
# The queue (256) is well below the 640 training images, so a key of the same image is rarely a
# negative; m = 0.99 lets the key encoder follow the query encoder within a short run (at the
# reference's 0.999 it is still ~97% its initialisation after 32 steps).
pretrain() {  # SAVE_DIR MAX_STEPS
  rm -rf "$1"
  "$MOCO" pretrain "$DATA" --save-dir "$1" -a resnet18 --small-stem --image-size 64 -b 32 --moco-k 256 \
    --moco-m 0.99 --bn-groups 4 --aug-plus --mlp --moco-t 0.2 --lr 0.06 --epochs 200 --max-steps "$2" --print-freq 4 \
    --device cpu >"$1.log" 2>&1 || { cat "$1.log" >&2; exit 1; }
  grep -E "^(stopped|done)" "$1.log"
}

SECONDS=0
pretrain "$WORK/run_step1" 1
pretrain "$WORK/run_short" "$STEPS"
echo "pretraining took ${SECONDS}s (the one-step run included)"

for run in run_step1 run_short; do
  echo
  # shellcheck disable=SC2086
  "$REPORT" "$DATA" --checkpoint "$WORK/$run/checkpoints/last.safetensors" --n "$N" ${REPORT_ARGS:-}
done
