#!/usr/bin/env bash
# tests/tools/cuda_graphs_cli.sh MOCO DATA WORKDIR: --cuda-graphs through pretrain and supervised on
# the tiny synthetic dataset DATA:
#   - a value other than auto, on or off is refused by the command line;
#   - on is refused where the step cannot be captured (the CPU; the published code's hard negatives),
#     saying why, before any run directory is written;
#   - args.json records the mode;
#   - with a GPU (the emulation build has one), --cuda-graphs on captures the third step of pretrain
#     and supervised and says so, and auto does the same, for the masked step too.
# Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 data=$2 work=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
net=(-a resnet18 --small-stem --width 4 --image-size 16 -b 4 --bn-groups 2 -j 2)
moco_flags=(--moco-k 8 --moco-dim 8 --mlp)

out=$("$moco" pretrain "$data" --save-dir bad "${net[@]}" "${moco_flags[@]}" --cuda-graphs maybe 2>&1) &&
  fail "--cuda-graphs maybe was accepted"
grep -q "cuda-graphs" <<<"$out" || fail "the refusal of 'maybe' does not name the flag: $out"

out=$("$moco" pretrain "$data" --save-dir cpu_on "${net[@]}" "${moco_flags[@]}" --device cpu --cuda-graphs on 2>&1) &&
  fail "--cuda-graphs on was accepted on the CPU"
grep -q "cannot be honoured: CUDA graphs need a GPU" <<<"$out" || fail "the CPU refusal says: $out"
[ -e cpu_on/args.json ] && fail "a refused run wrote its run directory"

out=$("$moco" pretrain "$data" --save-dir cpu_off "${net[@]}" "${moco_flags[@]}" --device cpu --cuda-graphs off \
  --max-steps 1 2>&1) || fail "pretrain --cuda-graphs off: $out"
grep -q '"cuda_graphs": "off"' cpu_off/args.json || fail "args.json: $(cat cpu_off/args.json)"

if "$moco" version 2>&1 | grep -qE "GPUs visible: [1-9]"; then
  out=$("$moco" pretrain "$data" --save-dir quirks_on "${net[@]}" "${moco_flags[@]}" --device cuda --strategy hp \
    --alpha 2 --num-nonsem 1 --reference-quirks --cuda-graphs on 2>&1) &&
    fail "--cuda-graphs on was accepted for the published code's hard negatives"
  grep -q "the published code's hard negatives" <<<"$out" || fail "the quirks refusal says: $out"
  for mode in on auto; do
    out=$("$moco" pretrain "$data" --save-dir "gpu_$mode" "${net[@]}" "${moco_flags[@]}" --device cuda \
      --cuda-graphs $mode --max-steps 4 -p 1 2>&1) || fail "pretrain --cuda-graphs $mode: $out"
    grep -q "step 2 was captured as a CUDA graph" <<<"$out" || fail "pretrain --cuda-graphs $mode captured nothing: $out"
  done
  out=$("$moco" supervised "$data" --save-dir gpu_supervised "${net[@]}" --device cuda --cuda-graphs on \
    --max-steps 4 2>&1) || fail "supervised --cuda-graphs on: $out"
  grep -q "step 2 was captured as a CUDA graph" <<<"$out" || fail "supervised captured nothing: $out"
  # The masked step is captured too; the first batch of each epoch (the picture's) runs eagerly.
  out=$("$moco" pretrain "$data" --save-dir gpu_masked_auto "${net[@]}" "${moco_flags[@]}" --device cuda \
    --strategy hp --alpha 2 --num-nonsem 1 --max-steps 4 2>&1) || fail "masked pretrain, auto: $out"
  grep -q "step 2 was captured as a CUDA graph" <<<"$out" || fail "the masked step was not captured: $out"
  out=$("$moco" pretrain "$data" --save-dir quirks_auto "${net[@]}" "${moco_flags[@]}" --device cuda --strategy hp \
    --alpha 2 --num-nonsem 1 --reference-quirks --max-steps 1 2>&1) || fail "quirks pretrain, auto: $out"
  grep -q "without a CUDA graph: the published code's hard negatives" <<<"$out" ||
    fail "auto does not say why the quirks step runs eagerly: $out"
else
  echo "no GPU here: the captures were not tried"
fi

[ $failures = 0 ] && echo "PASS: --cuda-graphs is refused where it cannot work, recorded, and captures on a GPU"
exit $failures
