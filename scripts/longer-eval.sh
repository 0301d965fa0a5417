#!/usr/bin/env bash
# The longer evaluated run: ResNet-18 (small stem) at 64 pixels on the hard synthetic dataset
# (10 classes, clutter, textured backgrounds), pretrained as plain MoCo v2 and as MoCo v2 with hp
# masking and one hard negative (alpha 2), each with the kNN monitor; then every encoder, and an
# untrained one of the same shape on plain and on high-passed inputs (the control that separates
# the filter's effect from learning), evaluated by kNN, the cached linear probe and 10 epochs of the
# full linear protocol. Prints one table at the end.
#
#   scripts/longer-eval.sh MOCO DEVICE WORK [--smoke]
#
# MOCO is the built `moco` binary, DEVICE cuda or cpu, WORK a scratch folder (replaced). The full
# scale is meant for one GPU (about 2850 steps of 256 per pretraining; EVAL_EPOCHS=N overrides
# the 150 epochs); --smoke runs the same
# commands at a toy scale on any machine, to check the script itself in a minute.
set -euo pipefail
export LC_ALL=C  # printf's decimal point
[ $# -ge 3 ] || { echo "usage: $0 MOCO DEVICE WORK [--smoke]" >&2; exit 2; }
moco=$1 device=$2 work=$3
threads=$(nproc)
if [ "${4:-}" = --smoke ]; then
  classes=3 per_class=24 val=8 size=40 image=32 batch=16 queue=64 epochs=2 knn_every=1 lincls_epochs=2 schedule=1
else
  classes=10 per_class=500 val=100 size=72 image=64 batch=256 queue=4096 epochs=${EVAL_EPOCHS:-150} knn_every=25 lincls_epochs=10 schedule=6,8
fi
rm -rf "$work"
mkdir -p "$work"
"$moco" synth "$work/images" --classes $classes --train-per-class $per_class --val-per-class $val --size $size >/dev/null

net=(-a resnet18 --small-stem)
for strategy in none hp; do
  hard_negative=()
  [ $strategy = hp ] && hard_negative=(--alpha 2 --num-nonsem 1)
  echo "== pretraining: strategy $strategy"
  "$moco" pretrain "$work/images" --save-dir "$work/pretrain_$strategy" "${net[@]}" --image-size $image -b $batch \
    --bn-groups 4 --moco-k $queue --moco-m 0.99 --lr 0.06 --mlp --aug-plus --cos --moco-t 0.2 --blur-sigma 0.03,0.6 \
    --epochs $epochs --knn-every $knn_every -p 100 -j "$threads" --device "$device" --strategy $strategy \
    "${hard_negative[@]}" | grep -E "^pretraining|knn monitor|^done"
done

source "$(dirname "$0")/json-number.sh"
encoders=(random_init random_init_hp mocov2 mocov2_hp)
declare -A knn cached full
for encoder in "${encoders[@]}"; do
  case $encoder in
    random_init) backbone=(--pretrained random "${net[@]}" --high-pass off) ;;
    random_init_hp) backbone=(--pretrained random "${net[@]}" --high-pass on) ;;
    mocov2) backbone=(--pretrained "$work/pretrain_none/checkpoints/last.safetensors") ;;
    mocov2_hp) backbone=(--pretrained "$work/pretrain_hp/checkpoints/last.safetensors") ;;
  esac
  echo "== evaluating $encoder"
  "$moco" knn "$work/images" "${backbone[@]}" --image-size $image -j "$threads" --device "$device" \
    --json "$work/knn_$encoder.json" | tail -1
  "$moco" lincls "$work/images" "${backbone[@]}" --image-size $image --cached-features -j "$threads" --device "$device" \
    --save-dir "$work/cached_$encoder" | tail -3 | head -2
  "$moco" lincls "$work/images" "${backbone[@]}" --image-size $image --epochs $lincls_epochs --schedule $schedule \
    -j "$threads" --device "$device" --save-dir "$work/full_$encoder" | tail -3 | head -2
  knn[$encoder]=$(json_number "$work/knn_$encoder.json" knn_top1)
  cached[$encoder]=$(json_number "$work/cached_$encoder/result.json" best_top1)
  full[$encoder]=$(json_number "$work/full_$encoder/result.json" best_top1)
done
printf '\n%-15s %10s %21s %24s\n' encoder "kNN top-1" "linear (cached) best" "linear ($lincls_epochs epochs) best"
for encoder in "${encoders[@]}"; do
  printf '%-15s %9.2f%% %20.2f%% %23.2f%%\n' "$encoder" "${knn[$encoder]}" "${cached[$encoder]}" "${full[$encoder]}"
done
echo "($classes classes: chance is $(awk "BEGIN { print 100 / $classes }")%; $device)"
