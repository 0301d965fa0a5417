#!/usr/bin/env bash
# tests/tools/probe_cli.sh MOCO DATA CHECKPOINT WORKDIR: `moco probe` end to end on the tiny
# synthetic dataset DATA (which `moco synth` wrote with its part masks and masks/parts.txt):
#   - both levels on CHECKPOINT: the table on stdout, and --json with the four numbers the report
#     reads (object_top1, part_top1, chance_object, chance_part) in percent;
#   - the object level alone on a random ResNet needs no mask, and leaves part_top1 null;
#   - --stage layer3 pools a finer grid (4x4 at the checkpoint's 16 px, against layer4's 2x2); --picture draws the masks and the cells each part pools from;
#   - a missing mask, a missing parts.txt and a dataset without val/ are refused with clear messages.
# Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 data=$2 checkpoint=$3 work=$4
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# The value of a top-level key of the --json file (written with one key per line).
json_value() { sed -n "s/^  \"$2\": \(.*\),\?$/\1/p" "$1" | sed 's/,$//'; }

out=$("$moco" probe "$data" --pretrained "$checkpoint" --probe-epochs 5 -b 8 -j 2 --device cpu --json both.json \
  --picture parts.jpg 2>&1); rc=$?
[ $rc -eq 0 ] || fail "probe exited $rc: $out"
grep -qE "^  object +[0-9.]+% +[0-9.]+% +3 +12 +6$" <<<"$out" || fail "object row: $out"
grep -qE "^  part +[0-9.]+% +[0-9.]+% +[0-9]+ " <<<"$out" || fail "part row: $out"
for key in object_top1 part_top1 chance_object chance_part; do
  v=$(json_value both.json $key)
  awk -v v="$v" 'BEGIN { exit !(v ~ /^[0-9.]+$/ && v >= 0 && v <= 100) }' || fail "$key = '$v'"
done
[ "$(json_value both.json chance_object)" = "33.333333333333336" ] || fail "chance_object $(json_value both.json chance_object)"
[ "$(head -c 3 parts.jpg | od -An -tx1 | tr -d ' ')" = "ffd8ff" ] || fail "parts.jpg is not a JPEG"

out=$("$moco" probe "$data" --pretrained random -a resnet18 --small-stem --width 8 --image-size 32 --level object \
  --probe-epochs 5 -j 2 --device cpu --json object.json 2>&1) || fail "object level: $out"
[ "$(json_value object.json part_top1)" = "null" ] || fail "part_top1 without the part level: $(cat object.json)"

out=$("$moco" probe "$data" --pretrained "$checkpoint" --stage layer3 --level part --probe-epochs 5 -j 2 \
  --device cpu 2>&1) || fail "layer3: $out"
grep -q "at layer3 (4x4 cells, 16 px)" <<<"$out" || fail "layer3's grid: $out"

cp -r "$data" copy
victim=$(find copy/masks/val -name '*_parts.png' | sort | head -1)
rm "$victim"
out=$("$moco" probe copy --pretrained "$checkpoint" --device cpu 2>&1) && fail "a missing mask was accepted"
grep -q "no part mask for .*: expected .*$(basename "$victim")" <<<"$out" || fail "missing mask message: $out"
rm copy/masks/parts.txt
out=$("$moco" probe copy --pretrained "$checkpoint" --device cpu 2>&1) && fail "a missing parts.txt was accepted"
grep -q "no part table .*parts.txt" <<<"$out" || fail "missing table message: $out"
rm -r copy/val
out=$("$moco" probe copy --pretrained "$checkpoint" --level object --device cpu 2>&1) && fail "no val/ was accepted"
grep -q "has no val/ folder" <<<"$out" || fail "no val/ message: $out"

[ $failures -eq 0 ] && echo "PASS: moco probe (both levels, json, layer3, picture, refusals)"
exit $failures
