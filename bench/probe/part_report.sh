#!/usr/bin/env bash
# bench/probe/part_report.sh [BUILD_DIR]: the part-aware study in miniature. Trains the quickstart's
# encoder (ResNet-18 of width 8, small stem, 32 px; scripts/quickstart.sh) on the quickstart's
# synthetic dataset as
#   supervised            labels and cross-entropy (`moco supervised`), the same steps as pretraining
#   mocov2, mocov2_hp     MoCo v2, plain and with hp masking and one hard negative
#   simclr, simclr_hp     SimCLR (LARS), plain and with hp masking and one hard negative
# next to random_init (an untrained encoder of the same shape) and random_init_hp (the same on
# high-passed images: what the filter alone gives the hp rows), and probes each at the object
# and the part level (`moco probe`, docs/METHOD.md section 9.3) on layer4 (4x4 cells) and layer3
# (8x8 cells). Prints one table and writes it, with the commands' JSON, under OUT (default
# part-report-out/). About 11 minutes on 2 CPU cores once the build exists.
#
# Environment: PR_OUT (output folder), PR_EPOCHS (18: ~560 steps of 64 per training), PR_DEVICE
# (auto), PR_METHODS ("mocov2 simclr").
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
build=${1:-build}
moco="$build/tools/moco"
[ -x "$moco" ] || { echo "no $moco: build the moco target first (cmake --build $build --target moco)" >&2; exit 1; }
start=$(date +%s)
out=${PR_OUT:-part-report-out}
epochs=${PR_EPOCHS:-18}
device=${PR_DEVICE:-auto}
threads=$(nproc)
data="$out/synth"
mkdir -p "$out"
"$moco" synth "$data" --classes 5 --train-per-class 400 --val-per-class 60 --size 40 --clutter 0 --plain-background \
  --force
net=(-a resnet18 --small-stem --width 8)
common=("${net[@]}" --image-size 32 -b 64 --bn-groups 4 --epochs "$epochs" -j "$threads" --device "$device" -p 1000)
contrastive=(--aug-plus --blur-sigma 0.02,0.3 --cos)  # supervised is cosine always
mocov2=(--moco-k 256 --moco-m 0.99 --moco-dim 64 --lr 0.06 --mlp --moco-t 0.2)
simclr=(--method simclr --simclr-dim 64 --optimizer lars --lr 0.3 --wd 1e-6 --simclr-t 0.2)
hp=(--strategy hp --alpha 2 --num-nonsem 1)
train() {  # NAME COMMAND FLAGS...
  local name=$1 command=$2; shift 2
  echo "== training $name"
  rm -rf "${out:?}/$name"
  "$moco" "$command" "$data" --save-dir "$out/$name" "${common[@]}" "$@" >"$out/$name.log" 2>&1 ||
    { tail -20 "$out/$name.log"; exit 1; }
  tail -1 "$out/$name.log"
}
encoders=(random_init random_init_hp supervised)
train supervised supervised --lr 0.1
for method in ${PR_METHODS:-mocov2 simclr}; do
  case $method in
    mocov2) flags=("${mocov2[@]}") ;;
    simclr) flags=("${simclr[@]}") ;;
    *) echo "PR_METHODS: expected mocov2 and/or simclr, found '$method'" >&2; exit 1 ;;
  esac
  train "$method" pretrain "${contrastive[@]}" "${flags[@]}"
  train "${method}_hp" pretrain "${contrastive[@]}" "${flags[@]}" "${hp[@]}"
  encoders+=("$method" "${method}_hp")
done

source scripts/json-number.sh
declare -A result
for encoder in "${encoders[@]}"; do
  case $encoder in
    random_init) backbone=(--pretrained random "${net[@]}") ;;
    random_init_hp) backbone=(--pretrained random "${net[@]}" --high-pass on) ;;
    *) backbone=(--pretrained "$out/$encoder/checkpoints/last.safetensors") ;;
  esac
  for stage in layer4 layer3; do
    echo "== probing $encoder at $stage"
    json="$out/probe/$encoder-$stage.json"
    mkdir -p "$out/probe"
    "$moco" probe "$data" "${backbone[@]}" --stage "$stage" --image-size 32 -j "$threads" --device "$device" \
      --json "$json" >"$out/probe/$encoder-$stage.log"
    for key in object_top1 part_top1 chance_object chance_part tiny_parts; do
      result[$encoder.$stage.$key]=$(json_number "$json" $key)
    done
  done
done
"$moco" probe "$data" --pretrained "$out/supervised/checkpoints/last.safetensors" --stage layer3 --image-size 32 \
  --level part --picture "$out/parts_layer3.jpg" -j "$threads" --device "$device" >/dev/null
seconds=$(($(date +%s) - start))
{
  printf '%-15s %14s %14s %14s %14s\n' encoder "object layer4" "part layer4" "object layer3" "part layer3"
  for encoder in "${encoders[@]}"; do
    printf '%-15s %13.2f%% %13.2f%% %13.2f%% %13.2f%%\n' "$encoder" "${result[$encoder.layer4.object_top1]}" \
      "${result[$encoder.layer4.part_top1]}" "${result[$encoder.layer3.object_top1]}" \
      "${result[$encoder.layer3.part_top1]}"
  done
  printf '%-15s %13.2f%% %13.2f%% %13.2f%% %13.2f%%\n' chance "${result[random_init.layer4.chance_object]}" \
    "${result[random_init.layer4.chance_part]}" "${result[random_init.layer3.chance_object]}" \
    "${result[random_init.layer3.chance_part]}"
  printf '(parts under half a cell, not probed: %s at layer4, %s at layer3; %s epochs per training; %s s on %s)\n' \
    "${result[random_init.layer4.tiny_parts]}" "${result[random_init.layer3.tiny_parts]}" "$epochs" "$seconds" \
    "$device"
} | tee "$out/table.txt"
echo "wrote $out/table.txt, $out/probe/*.json and $out/parts_layer3.jpg (the masks and the cells each part pools from)"
