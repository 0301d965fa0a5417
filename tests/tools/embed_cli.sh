#!/usr/bin/env bash
# tests/tools/embed_cli.sh MOCO CHECK_PUBLIC_API DATA CHECKPOINT WORKDIR: `moco embed` end to end, and
# the installed library's API against it. A folder of DATA's images in two sub-folders plus a
# truncated JPEG, an empty file and a PNG named .jpg is embedded with CHECKPOINT:
#   - the two damaged files are named and skipped, the PNG is decoded by its content (as PIL does,
#     data/README.md), and the exit status is 0;
#   - E.safetensors holds one f32 tensor `embeddings` (N x D) and E.safetensors.paths.txt the N paths
#     in row order; --npy writes the same values as NumPy; --normalize gives unit rows;
#     --output projection gives the head's width;
#   - check_public_api (linked to libmoco_engine.so only) embeds the folder through the public API
#     and finds the vectors of `moco embed --npy`;
#   - a missing folder, an --out in a missing folder and a folder with no decodable image are refused.
# Prints "PASS: ..." at the end.
set -uo pipefail
moco=$1 check_api=$2 data=$3 checkpoint=$4 work=$5
here=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"; mkdir -p "$work"; cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

mkdir -p images/a images/b/deeper
mapfile -t good < <(find "$data/train" -name '*.jpg' | sort | head -5)
cp "${good[0]}" "${good[1]}" "${good[2]}" images/a/
cp "${good[3]}" images/b/
cp "${good[4]}" images/b/deeper/
head -c $(($(stat -c %s "${good[0]}") / 2)) "${good[0]}" >images/a/corrupt.jpg
: >images/b/empty.jpg
cp "$here/tests/fixtures/data/rgba.png" images/b/png_named.jpg
echo "not an image, and not listed: no image extension" >images/a/notes.txt

out=$("$moco" embed images --pretrained "$checkpoint" --out e.safetensors -b 4 -j 2 --device cpu 2>&1); rc=$?
[ $rc -eq 0 ] || fail "embed exited $rc: $out"
grep -q "skipped images/a/corrupt.jpg: not a decodable JPEG" <<<"$out" || fail "corrupt.jpg not named: $out"
grep -q "skipped images/b/empty.jpg: " <<<"$out" || fail "empty.jpg not named: $out"
grep -q "wrote 6 x 512 to e.safetensors .*; 2 unreadable images skipped" <<<"$out" || fail "summary: $out"
[ "$(wc -l <e.safetensors.paths.txt)" -eq 6 ] || fail "paths.txt: $(cat e.safetensors.paths.txt)"
grep -q "png_named.jpg" e.safetensors.paths.txt || fail "the PNG named .jpg was not embedded"
grep -qE "corrupt|empty|notes" e.safetensors.paths.txt && fail "paths.txt lists a skipped file"
[ "$(head -1 e.safetensors.paths.txt)" = "$PWD/images/a/$(basename "${good[0]}")" ] || fail "row 0 is $(head -1 e.safetensors.paths.txt)"
info=$("$moco" info e.safetensors 2>&1)
grep -qE "embeddings +F32 +\(6, 512\)" <<<"$info" || fail "moco info: $info"

out=$("$moco" embed images --pretrained "$checkpoint" --out e.npy --npy -b 4 -j 2 --device cpu 2>&1) || fail "--npy: $out"
[ "$(head -c 6 e.npy | tail -c 5)" = "NUMPY" ] || fail "e.npy is not a .npy file"
cmp -s e.npy.paths.txt e.safetensors.paths.txt || fail "the two runs list different paths"
# The paths file is a list of images itself, read from any folder.
out=$(cd / && "$moco" embed "$work/e.npy.paths.txt" --pretrained "$checkpoint" --out "$work/again.npy" --npy -j 2 \
      --device cpu 2>&1) || fail "the paths file as IMAGES: $out"
cmp -s again.npy.paths.txt e.npy.paths.txt || fail "the paths file as IMAGES embedded other files: $out"

out=$("$moco" embed images --pretrained "$checkpoint" --out p.safetensors --output projection --normalize -b 4 -j 2 \
      --device cpu 2>&1) || fail "--output projection: $out"
grep -q "projection (8, L2-normalised)" <<<"$out" || fail "projection header: $out"
grep -q "wrote 6 x 8 to p.safetensors" <<<"$out" || fail "projection summary: $out"

api=$("$check_api" "$checkpoint" images e.npy 2>&1) || fail "the public API: $api"
grep -q "^PASS: " <<<"$api" || fail "check_public_api: $api"

# Refusals, each with a message.
expect_refusal() {
  local what=$1 regex=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then fail "$what: exit $rc: $msg"; return; fi
  grep -qE -- "$regex" <<<"$msg" || fail "$what: the message does not say /$regex/: $msg"
}
expect_refusal "missing folder" "'no_such_folder' does not exist" \
  "$moco" embed no_such_folder --pretrained "$checkpoint" --out x.safetensors --device cpu
expect_refusal "missing out folder" "the folder 'no_such_dir' does not exist" \
  "$moco" embed images --pretrained "$checkpoint" --out no_such_dir/x.safetensors --device cpu
expect_refusal "out is a folder" "'images' is a folder" \
  "$moco" embed images --pretrained "$checkpoint" --out images --device cpu
mkdir -p bad; : >bad/empty.jpg; cp images/a/corrupt.jpg bad/
expect_refusal "nothing decodable" "none of the 2 images of bad could be decoded" \
  "$moco" embed bad --pretrained "$checkpoint" --out bad.safetensors --device cpu
[ -e bad.safetensors ] && fail "a failed embed left bad.safetensors"

if [ $failures -eq 0 ]; then echo "PASS: moco embed and the public API embed the same vectors and skip what cannot be read"; else exit 1; fi
