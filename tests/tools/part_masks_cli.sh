#!/usr/bin/env bash
# tests/tools/part_masks_cli.sh MOCO WORKDIR: `moco masks --parts` end to end on a tiny synthetic
# dataset of its own (this test deletes parts of it):
#   - it writes a JPEG and says which grid it drew and how many parts were skipped as too small;
#   - --stage layer3 draws a finer grid than layer4 at the same size;
#   - masking flags are refused with --parts, and --stage without it;
#   - a dataset without masks/parts.txt, or an image without its mask, is refused with what is
#     missing (data/part_masks.h).
# Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 work=$2
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$moco" synth data --classes 2 --train-per-class 2 --val-per-class 1 --size 32 --threads 1 >/dev/null \
  || { echo "FAIL: moco synth"; exit 1; }

out=$("$moco" masks data --parts --out pics/parts.jpg --n 3 --size 32 -a resnet18 --small-stem 2>&1) \
  || fail "--parts exited $?: $out"
summary="^wrote pics/parts.jpg: the parts of 3 images of data/train at 32x32 over layer4's 4x4 grid"
summary+=" \(resnet18 small stem\); [0-9]+ parts, [0-9]+ of them under 0.5 cells skipped as too small$"
grep -qE "$summary" <<<"$out" || fail "summary: $out"
[ "$(head -c 3 pics/parts.jpg | od -An -tx1 | tr -d ' ')" = "ffd8ff" ] || fail "pics/parts.jpg is not a JPEG"
out=$("$moco" masks data --parts --split val --stage layer3 --min-part-cells 1000 --out l3.jpg --size 32 \
      --small-stem 2>&1) || fail "--stage layer3 exited $?: $out"
grep -qE "of 2 images of data/val at 32x32 over layer3's 8x8 grid .*; ([0-9]+) parts, \1 of them under 1000 cells" <<<"$out" \
  || fail "layer3 summary: $out"

expect_refusal() {
  local what=$1 regex=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then fail "$what: exit $rc: $msg"; return; fi
  grep -qE -- "$regex" <<<"$msg" || fail "$what: the message does not say /$regex/: $msg"
}
expect_refusal "masking flag with --parts" "--strategy shapes the masking picture, which --parts does not draw" \
  "$moco" masks data --parts --strategy hp --out never.jpg --size 32
expect_refusal "--stage without --parts" "--stage is for the part picture: add --parts" \
  "$moco" masks data --stage layer3 --out never.jpg --size 32
expect_refusal "a split that is not there" "data/test is not a folder" \
  "$moco" masks data --parts --split test --out never.jpg --size 32
mv data/masks/parts.txt parts.txt.away
expect_refusal "no parts.txt" "no part table data/masks/parts.txt" \
  "$moco" masks data --parts --out never.jpg --size 32
mv parts.txt.away data/masks/parts.txt
first=$(find data/train -name '*.jpg' | sort | head -1)
mask=data/masks/train/${first#data/train/}; mask=${mask%.jpg}_parts.png
[ -f "$mask" ] || fail "no mask $mask to delete"
rm -f "$mask"
expect_refusal "a missing mask" "no part mask for $first: expected $mask" \
  "$moco" masks data --parts --out never.jpg --size 32
[ -e never.jpg ] && fail "a refused run left never.jpg"

if [ $failures -eq 0 ]; then echo "PASS: moco masks --parts draws the part masks and refuses missing ones"; else exit 1; fi
