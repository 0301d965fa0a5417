#!/usr/bin/env bash
# The main command: on a fresh machine, installs what is missing, builds the `moco` tool, writes a
# small synthetic dataset, pretrains a small ResNet twice (plain MoCo v2, and MoCo v2 with hp
# masking and one hard negative), evaluates both and a randomly initialised encoder of the same
# architecture by kNN and by a linear probe, prints one table and writes it to
# quickstart-out/summary.json. A GPU is used when one is present; otherwise everything runs on the
# CPU (about 7.5 minutes on 2 cores, the build included).
#
# QS_METHODS chooses the methods: "mocov2" (the default), "simclr" (plain SimCLR and SimCLR + hp,
# about 9 minutes on 2 cores, the build included), or "mocov2 simclr" (all six rows, about 12).
#
# The scale (set below, each overridable from the environment) is chosen for 2 CPU cores: a
# ResNet-18 of width 8 with the small-image stem at 32 pixels, about 560 steps of 64 images per
# pretraining, on 5 classes of `moco synth`'s easy variant (no clutter, plain backgrounds). The
# numbers say whether self-supervision learned something at this scale; they are not the paper's.
set -euo pipefail
export LC_ALL=C  # printf's decimal point
cd "$(dirname "$0")/.."
start=$(date +%s)

scripts/install-deps.sh
source scripts/env.sh

# CUDA when a GPU answers; otherwise a CPU-only build, which skips compiling the CUDA kernels.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
  device=cuda
  build_dir=${BUILD_DIR:-build}
  cmake_flags=()
else
  device=cpu
  build_dir=${BUILD_DIR:-build-cpu}
  cmake_flags=(-DENGINE_CUDA=OFF)
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${cmake_flags[@]+"${cmake_flags[@]}"} >/dev/null
cmake --build "$build_dir" --target moco
moco="$build_dir/tools/moco"
"$moco" version

out=quickstart-out
classes=${QS_CLASSES:-5}
epochs=${QS_EPOCHS:-18}
threads=$(nproc)
data="$out/synth"
mkdir -p "$out"
"$moco" synth "$data" --classes "$classes" --train-per-class "${QS_TRAIN_PER_CLASS:-400}" --val-per-class 60 \
  --size 40 --clutter 0 --plain-background --force

net=(-a resnet18 --small-stem --width "${QS_WIDTH:-8}")
methods=(${QS_METHODS:-mocov2})
# Shared by both methods: the net, the crop, the batch in 4 BatchNorm groups, aug-plus with the blur
# scaled from the reference's 224 pixels to 32, a cosine schedule, the kNN monitor.
common_flags=("${net[@]}" --image-size 32 -b 64 --bn-groups 4 --aug-plus --cos --blur-sigma 0.02,0.3
  --epochs "$epochs" --knn-every 6 -j "$threads" --device "$device" -p 1000)
# MoCo v2 (--mlp, T 0.2) with a queue of 256 (well under the 2000 images) and m 0.99 for the short run.
mocov2_flags=(--moco-k 256 --moco-m 0.99 --moco-dim 64 --lr "${QS_LR:-0.06}" --mlp --moco-t 0.2)
# SimCLR with LARS at lr 0.3 (SimCLR's base rate, not scaled down by 64/256 for the short run),
# T 0.2 (docs/METHOD.md section 13), BatchNorm in 4 groups as the MoCo rows, for a like-for-like table.
simclr_flags=(--method simclr --simclr-dim 64 --optimizer lars --lr "${QS_SIMCLR_LR:-0.3}" --wd 1e-6 --simclr-t 0.2)
encoders=(random_init random_init_hp)
for method in "${methods[@]}"; do
  case $method in
    mocov2) flags=("${mocov2_flags[@]}") ;;
    simclr) flags=("${simclr_flags[@]}") ;;
    *) echo "QS_METHODS: expected mocov2 and/or simclr, found '$method'" >&2; exit 1 ;;
  esac
  rm -rf "$out/$method" "$out/${method}_hp"
  echo "== pretraining plain $method"
  "$moco" pretrain "$data" --save-dir "$out/$method" "${common_flags[@]}" "${flags[@]}"
  echo "== pretraining $method + hp masking + 1 hard negative"
  "$moco" pretrain "$data" --save-dir "$out/${method}_hp" "${common_flags[@]}" "${flags[@]}" --strategy hp --alpha 2 \
    --num-nonsem 1
  encoders+=("$method" "${method}_hp")
done
rm -rf "$out/eval"

# kNN (k 200, t 0.07) and a linear probe (lr 30 as main_lincls.py, 100 epochs on cached features of
# the un-augmented images: seconds instead of the protocol's augmented epochs). The hp encoders are
# evaluated on high-passed images, as the paper does; random_init_hp shows what the filter alone
# gives an untrained encoder, so that its gain is not mistaken for learning.
source scripts/json-number.sh
declare -A knn linear linear_last
for encoder in "${encoders[@]}"; do
  case $encoder in
    random_init) backbone=(--pretrained random "${net[@]}") ;;
    random_init_hp) backbone=(--pretrained random "${net[@]}" --high-pass on) ;;
    *) backbone=(--pretrained "$out/$encoder/checkpoints/last.safetensors") ;;
  esac
  echo "== evaluating $encoder"
  mkdir -p "$out/eval/$encoder"
  "$moco" knn "$data" "${backbone[@]}" --image-size 32 -j "$threads" --device "$device" \
    --json "$out/eval/$encoder/knn.json"
  "$moco" lincls "$data" "${backbone[@]}" --image-size 32 --cached-features -j "$threads" --device "$device" \
    --save-dir "$out/eval/$encoder/lincls" >"$out/eval/$encoder/lincls.log"
  tail -3 "$out/eval/$encoder/lincls.log" | head -2
  knn[$encoder]=$(json_number "$out/eval/$encoder/knn.json" knn_top1)
  linear[$encoder]=$(json_number "$out/eval/$encoder/lincls/result.json" best_top1)
  linear_last[$encoder]=$(json_number "$out/eval/$encoder/lincls/result.json" last_top1)
done

seconds=$(($(date +%s) - start))
printf '\n%-15s %12s %18s %18s\n' encoder "kNN top-1" "linear top-1 best" "linear top-1 last"
for encoder in "${encoders[@]}"; do
  printf '%-15s %11.2f%% %17.2f%% %17.2f%%\n' "$encoder" "${knn[$encoder]}" "${linear[$encoder]}" \
    "${linear_last[$encoder]}"
done
printf '(%s classes: chance is %.1f%%; %s s on %s, build included)\n' "$classes" \
  "$(awk "BEGIN { print 100 / $classes }")" "$seconds" "$device"
{
  echo "{"
  echo "  \"device\": \"$device\","
  echo "  \"seconds\": $seconds,"
  echo "  \"classes\": $classes,"
  echo "  \"pretrain_epochs\": $epochs,"
  for i in "${!encoders[@]}"; do
    encoder=${encoders[$i]}
    sep=","
    [ "$i" -eq $((${#encoders[@]} - 1)) ] && sep=""
    echo "  \"$encoder\": {\"knn_top1\": ${knn[$encoder]}, \"linear_top1\": ${linear[$encoder]}," \
      "\"linear_top1_last\": ${linear_last[$encoder]}}$sep"
  done
  echo "}"
} >"$out/summary.json"
echo "wrote $out/summary.json"
