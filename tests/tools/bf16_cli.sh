#!/usr/bin/env bash
# tests/tools/bf16_cli.sh MOCO DATA WORKDIR: --precision bf16 through the commands, on the CPU's bf16
# mode, on the tiny synthetic dataset DATA:
#   - pretrain (MoCo v2 with hp masking and a hard negative, so the saliency reads a bf16 map) runs,
#     records the precision in args.json, and its checkpoint holds f32 tensors only;
#   - supervised records bf16 in args.json; knn, lincls (cached features), embed and probe take bf16
#     and give their results, and embed's differ from fp32's (the flag reached the network);
#   - demo refuses bf16 with a message saying why.
# Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 data=$2 work=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
net=(-a resnet18 --small-stem --width 8)

out=$("$moco" pretrain "$data" --save-dir mocov2 "${net[@]}" -b 4 --bn-groups 2 --moco-k 8 --moco-dim 8 --mlp \
  --aug-plus --cos --image-size 16 --epochs 1 -j 2 --device cpu --precision bf16 --strategy hp --alpha 2 \
  --num-nonsem 1 2>&1) || fail "pretrain: $out"
grep -q '"precision": "bf16"' mocov2/args.json || fail "args.json: $(cat mocov2/args.json)"
checkpoint=mocov2/checkpoints/last.safetensors
info=$("$moco" info "$checkpoint" 2>&1) || fail "info: $info"
grep -qE "^ *encoder_q\.conv1\.weight +F32" <<<"$info" || fail "conv1's master weight is not F32: $(grep conv1 <<<"$info" | head -2)"
grep -qE " BF16 " <<<"$info" && fail "a bf16 tensor in the checkpoint: $(grep ' BF16 ' <<<"$info" | head -2)"

out=$("$moco" supervised "$data" --save-dir supervised "${net[@]}" -b 4 --bn-groups 2 --image-size 16 --epochs 1 \
  -j 2 --device cpu --precision bf16 2>&1) || fail "supervised: $out"
grep -q '"precision": "bf16"' supervised/args.json || fail "supervised's args.json: $(cat supervised/args.json)"

out=$("$moco" knn "$data" --pretrained "$checkpoint" --k 3 -b 4 -j 2 --device cpu --precision bf16 2>&1) || fail "knn: $out"
grep -qE "knn top-1 [0-9.]+%" <<<"$out" || fail "knn's result: $out"

out=$("$moco" lincls "$data" --pretrained "$checkpoint" --save-dir lincls --epochs 2 -b 4 -j 2 --cached-features \
  --device cpu --precision bf16 2>&1) || fail "lincls: $out"

find "$data/val" -name '*.jpg' | sort > images.txt
out=$("$moco" embed images.txt --pretrained "$checkpoint" --out emb.safetensors -b 4 -j 2 --device cpu \
  --precision bf16 2>&1) || fail "embed: $out"
"$moco" info emb.safetensors 2>&1 | grep -qE "embeddings +F32 +\(6, 64\)" || fail "embeddings: $("$moco" info emb.safetensors 2>&1)"
# The same images in fp32 give other values (bf16 rounds the trunk's activations): the flag took.
# (.npy holds the values alone; the safetensors metadata would differ anyway.)
for p in bf16 fp32; do
  out=$("$moco" embed images.txt --pretrained "$checkpoint" --out "emb_$p.npy" --npy -b 4 -j 2 --device cpu \
    --precision $p 2>&1) || fail "embed --npy $p: $out"
done
[ -s emb_bf16.npy ] && [ -s emb_fp32.npy ] || fail "embed --npy wrote nothing"
cmp -s emb_bf16.npy emb_fp32.npy && fail "bf16 and fp32 embeddings are the same values: --precision was ignored"

out=$("$moco" probe "$data" --pretrained "$checkpoint" --level object --probe-epochs 3 -b 4 -j 2 --device cpu \
  --precision bf16 2>&1) || fail "probe: $out"

out=$("$moco" demo --device cpu --steps 2 --precision bf16 2>&1) && fail "demo took bf16: $out"
grep -q "the demo trains a small f32 MLP" <<<"$out" || fail "demo's refusal: $out"

if [ $failures -eq 0 ]; then echo "PASS: bf16 through pretrain, supervised, knn, lincls, embed and probe"; fi
exit $failures
