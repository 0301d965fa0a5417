#!/usr/bin/env bash
# tests/tools/hostile_files.sh MOCO WORKDIR: the `moco` commands that read files from strangers, fed
# hostile ones. Each must end with a message that says what was wrong, never a crash, a hang or a
# huge allocation (the sanitized build runs this too): safetensors headers that lie, a checkpoint
# of another architecture or method, and an image folder of damaged, mislabelled, tiny and
# over-sized images, which `moco batch` must skip by name or decode. Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 work=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_refusal WHAT REGEX COMMAND...: the command fails (not by a signal) and prints REGEX.
expect_refusal() {
  local what=$1 regex=$2; shift 2
  local out rc
  out=$(timeout 120 "$@" 2>&1 | tr '\n' ' '); rc=${PIPESTATUS[0]}
  if [ $rc -eq 0 ]; then fail "$what: accepted ($*)"; return; fi
  if [ $rc -ge 124 ]; then fail "$what: exit $rc (a crash, signal or timeout): $out"; return; fi
  grep -qE -- "$regex" <<<"$out" || fail "$what: the message does not say /$regex/: $out"
}

# A safetensors file from a JSON header (written as given) and a data section.
le64() { local n=$1; for _ in 1 2 3 4 5 6 7 8; do printf "\\x$(printf %02x $((n & 255)))"; n=$((n >> 8)); done; }
safetensors() {  # FILE HEADER DATA_BYTES [CLAIMED_HEADER_LENGTH]
  { le64 "${4:-${#2}}"; printf '%s' "$2"; head -c "$3" /dev/zero; } >"$1"
}
t() { printf '"%s":{"dtype":"%s","shape":%s,"data_offsets":%s}' "$@"; }

safetensors header_past_end.safetensors '{}' 0 1048576
safetensors offset_out_of_range.safetensors "{$(t w F32 '[4]' '[0,16]')}" 8
safetensors overlapping.safetensors "{$(t a F32 '[2]' '[0,8]'),$(t b F32 '[2]' '[4,12]')}" 12
safetensors overflowing_shape.safetensors "{$(t w F32 '[4294967296,4294967296,16]' '[0,8]')}" 8
safetensors unknown_dtype.safetensors "{$(t w F8_E4M3 '[8]' '[0,8]')}" 8
safetensors duplicate_names.safetensors "{$(t w U8 '[4]' '[0,4]'),$(t w U8 '[4]' '[4,8]')}" 8
safetensors not_utf8.safetensors "{$(t $'w\xff' U8 '[8]' '[0,8]')}" 8
# A stem that promises a huge ResNet (width 4096: 800 GB of weights) in a file of 2.4 MB: refused
# before the model is built.
safetensors huge_width.safetensors "{$(t conv1.weight F32 '[4096,3,7,7]' '[0,2408448]')}" 2408448
: >zero_bytes.safetensors

declare -A says=(
  [header_past_end]="header claims 1048576 bytes but only 2 follow"
  [offset_out_of_range]="tensor 'w' \\(F32, shape \\(4,\\)\\) needs 16 bytes.*|ends at byte 16 of the data but the data has 8"
  [overlapping]="overlaps the previous tensor"
  [overflowing_shape]="too many elements"
  [unknown_dtype]="unsupported safetensors dtype 'F8_E4M3'"
  [duplicate_names]="names 'w' twice"
  [not_utf8]="not valid JSON.*UTF-8"
  [zero_bytes]="0 bytes, shorter than the 8-byte header length"
)
"$moco" synth data --classes 2 --train-per-class 3 --val-per-class 2 --size 32 --force >/dev/null || fail "synth"
for name in "${!says[@]}"; do
  f=$name.safetensors
  expect_refusal "info $f" "${says[$name]}" "$moco" info "$f"
  expect_refusal "inspect --weights $f" "${says[$name]}" "$moco" inspect --arch resnet18 --weights "$f" --input-shape 1,3,32,32
  expect_refusal "knn --pretrained $f" "${says[$name]}" "$moco" knn data --pretrained "$f" --device cpu
  expect_refusal "embed --pretrained $f" "${says[$name]}" "$moco" embed data --pretrained "$f" --out e.safetensors --device cpu
  expect_refusal "embed --output projection --pretrained $f" "${says[$name]}" \
    "$moco" embed data --pretrained "$f" --output projection --out e.safetensors --device cpu
done
expect_refusal "knn --pretrained huge_width" "has no tensor 'layer4.0.conv2.weight', which a ResNet of width 4096 needs" \
  "$moco" knn data --pretrained huge_width.safetensors --device cpu
expect_refusal "inspect --weights huge_width" "tensor 'conv1.weight' is \\(4096, 3, 7, 7\\) but a ResNet of width 64 needs \\(64, 3, 7, 7\\)" \
  "$moco" inspect --arch resnet18 --weights huge_width.safetensors --input-shape 1,3,32,32

# A checkpoint of another architecture (the fuzzers' seed: ResNet-18 of width 1, K 8), of another
# method, and of the linear probe.
checkpoint=$here/fuzz/corpus/pretrained/moco_checkpoint.safetensors
expect_refusal "resume with another architecture" "other flags than this run's.*arch: checkpoint resnet18, this run resnet50" \
  "$moco" pretrain data --save-dir run50 --resume "$checkpoint" -a resnet50 --width 1 --small-stem -b 4 --moco-dim 4 \
  --moco-k 8 --mlp --image-size 16 --epochs 1 --device cpu
expect_refusal "inspect --weights of a checkpoint" "has no 4-d tensor 'conv1.weight'; not a ResNet" \
  "$moco" inspect --arch resnet18 --weights "$checkpoint" --input-shape 1,3,32,32
safetensors simclr.safetensors "{\"__metadata__\":{\"format\":\"simclr-pretrain-checkpoint/1\"},$(t fc.weight F32 '[1]' '[0,4]')}" 4
safetensors lincls.safetensors "{\"__metadata__\":{\"format\":\"moco-lincls-checkpoint/1\"},$(t fc.weight F32 '[1]' '[0,4]')}" 4
for f in simclr lincls; do
  expect_refusal "masks --checkpoint of $f" "not a \`moco pretrain\` checkpoint \\(format '(simclr-pretrain|moco-lincls)-checkpoint/1'" \
    "$moco" masks data --checkpoint $f.safetensors --out $f.jpg --strategy hp
  expect_refusal "knn --pretrained of $f" "not a ResNet state dict" "$moco" knn data --pretrained $f.safetensors --device cpu
  expect_refusal "embed --output projection of $f" "only a \`moco pretrain\` checkpoint holds" \
    "$moco" embed data --pretrained $f.safetensors --output projection --out e.safetensors --device cpu
done

# Images: the loader skips what cannot be decoded, naming each file, and decodes the rest as PIL.
good=$(find data/train -name '*.jpg' | sort | head -1)
cls=data/train/class_hostile
mkdir -p $cls
: >$cls/zero_bytes.jpg
head -c $(($(stat -c %s "$good") / 2)) "$good" >$cls/truncated.jpg
cp "$here/tests/fixtures/data/rgba.png" $cls/png_named.jpg
cp "$here/tests/fixtures/data/cmyk.jpg" $cls/cmyk.jpg
cp "$here/tests/fixtures/data/gray16.png" $cls/gray16.png
printf '\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90\x77\x53\xde\x00\x00\x00\x0c\x49\x44\x41\x54\x78\x9c\x63\x38\x91\x62\x04\x00\x03\x56\x01\x5f\xe8\x17\x84\x52\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82' >$cls/one_pixel.png
cp "$here/tests/fixtures/data/baseline.jpg" $cls/over_the_pixel_limit.jpg
sof=$(LC_ALL=C grep -obUaP '\xff\xc0' $cls/over_the_pixel_limit.jpg | head -1 | cut -d: -f1)
for at in $((sof + 5)) $((sof + 7)); do printf '\x9c\x40' | dd of=$cls/over_the_pixel_limit.jpg bs=1 seek=$at conv=notrunc 2>/dev/null; done
out=$(timeout 120 "$moco" batch data --out batch.safetensors --n 8 --size 32 --no-shuffle -j 2 2>&1); rc=$?
[ $rc -eq 0 ] || fail "batch over the hostile folder: exit $rc: $out"
for bad in zero_bytes.jpg truncated.jpg over_the_pixel_limit.jpg; do
  grep -q "loader: skipping .*$bad" <<<"$out" || fail "batch: $bad is not named as skipped: $out"
done
for fine in png_named.jpg cmyk.jpg gray16.png one_pixel.png; do
  ! grep -q "skipping .*$fine" <<<"$out" || fail "batch: $fine should decode: $out"
done
grep -q "over_the_pixel_limit.jpg: 40000x40000 pixels exceeds the limit" <<<"$out" || fail "batch: no pixel-limit message: $out"

if [ $failures -eq 0 ]; then echo "PASS: every hostile file was refused or skipped with a message"; else exit 1; fi
