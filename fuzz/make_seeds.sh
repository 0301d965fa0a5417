#!/usr/bin/env bash
# Writes the fuzzers' seed corpora (fuzz/corpus/NAME/) from what the engine itself produces: a
# tiny synthetic dataset and two-step pretrainings (MoCo v2 and SimCLR) of a width-1 ResNet-18 (so
# a checkpoint is 70 KB), the decoding fixtures of tests/fixtures/data, and a few hand-made inputs. Needs a built
# `moco` (MOCO=path, default build/tools/moco) and a python3 with numpy (PYTHON=, default
# /usr/bin/python3, Debian's). Rerun it when a format changes; the seeds are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
MOCO=${MOCO:-build/tools/moco}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
out=fuzz/corpus
rm -rf "$out"; mkdir -p "$out"/{safetensors,pretrained,image,tensorboard,run_metadata,image_folder,part_masks}

"$MOCO" synth "$work/ds" --classes 2 --train-per-class 4 --val-per-class 1 --size 32 --force >/dev/null
OMP_WAIT_POLICY=passive "$MOCO" pretrain "$work/ds" --save-dir "$work/run" -a resnet18 --small-stem --width 1 \
  -b 4 --bn-groups 2 --moco-dim 4 --moco-k 8 --mlp --aug-plus --blur-sigma 0.1,0.2 --epochs 1 --image-size 16 \
  --device cpu -j 1 >/dev/null

# The same for SimCLR (its encoder under encoder., LARS's momentum), for load_pretrained's other branch.
OMP_WAIT_POLICY=passive "$MOCO" pretrain "$work/ds" --save-dir "$work/simclr" --method simclr -a resnet18 --small-stem \
  --width 1 -b 4 --simclr-dim 4 --optimizer lars --lr 0.3 --aug-plus --blur-sigma 0.1,0.2 --epochs 1 --image-size 16 \
  --device cpu -j 1 >/dev/null

# Checkpoints and state dicts: the checkpoints, and MoCo's query encoder under torchvision's names.
cp "$work/run/checkpoints/last.safetensors" "$out/pretrained/moco_checkpoint.safetensors"
cp "$work/simclr/checkpoints/last.safetensors" "$out/pretrained/simclr_checkpoint.safetensors"
${PYTHON:-/usr/bin/python3} - "$work/run/checkpoints/last.safetensors" "$out" <<'PY'
import json, struct, sys
sys.path.insert(0, "tools")
import numpy as np
from safetensors_io import save_safetensors
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
kinds = {"F32": np.float32, "I64": np.int64}
tensors = {}
for name, info in header.items():
    if name.startswith("encoder_q.") and not name.startswith("encoder_q.fc"):
        b, e = info["data_offsets"]
        tensors[name[len("encoder_q."):]] = np.frombuffer(data[b:e], kinds[info["dtype"]]).reshape(info["shape"])
save_safetensors(f"{out}/pretrained/torchvision_names.safetensors", tensors, {})
# The reader's own corpus: small files with every dtype, metadata, and an empty tensor.
save_safetensors(f"{out}/safetensors/dtypes.safetensors",
                 {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f64": np.array([1.5]),
                  "u8": np.array([1, 2, 3], np.uint8), "i32": np.array([-1], np.int32),
                  "i64": np.array(7, np.int64), "empty": np.zeros((0, 4), np.float32)},
                 {"format": "seed", "note": "every dtype"})
save_safetensors(f"{out}/safetensors/conv1.safetensors",
                 {"conv1.weight": tensors["conv1.weight"], "bn1.running_var": tensors["bn1.running_var"]}, {})
open(f"{out}/safetensors/empty_header.safetensors", "wb").write(struct.pack("<Q", 8) + b"{}      ")
PY

# Images: the decoding fixtures (baseline, progressive, 4:4:4, gray and CMYK JPEGs; RGBA, 16-bit
# gray and 16-bit RGB PNGs), a synthetic photo and its 8-bit part mask.
cp tests/fixtures/data/*.jpg tests/fixtures/data/*.png "$out/image/"
cp "$(find "$work/ds/train" -name '*.jpg' | sort | head -1)" "$out/image/synth.jpg"
cp "$(find "$work/ds/masks" -name '*_parts.png' | sort | head -1)" "$out/image/parts.png"

# TensorBoard events and the text a run reads back.
cp "$work"/run/logs/events.out.tfevents.* "$out/tensorboard/events.tfevents"
cp "$work/run/metrics.jsonl" "$out/run_metadata/metrics.jsonl"
cp "$work/run/args.json" "$out/run_metadata/args.json"
printf '{"bn_groups": 4, "image_size": 224}' >"$out/run_metadata/checkpoint_args.json"
printf '12345' >"$out/run_metadata/count.txt"

# Folder trees (fuzz_image_folder.cpp describes the lines).
printf 'd train/cat\nf train/cat/1.jpg\nd train/dog/sub\nf train/dog/sub/2.PNG\nd val/cat\nf val/cat/3.jpeg\n' \
  >"$out/image_folder/dataset.txt"
printf 'f a/x.jpg\nl a/up ..\nl a/self .\nf b/y.png\nl b/to_a ../a\n' >"$out/image_folder/link_loops.txt"
printf 'd empty_class\nf odd name \xff.jpg\nd c/ d\nf c/ d/.hidden.jpg\n' >"$out/image_folder/odd_names.txt"
# Part masks: the synthetic dataset's parts.txt (first byte odd: a table) and one part mask (even:
# a mask, drawn at side 8 + 8 = 16 in cells of a stride of 1 + 4 = 5 pixels).
{ printf '\x01'; cat "$work/ds/masks/parts.txt"; } >"$out/part_masks/parts_table"
{ printf '\x10'; cat "$(ls "$work"/ds/masks/train/*/*_parts.png | head -1)"; } >"$out/part_masks/synth_mask"
du -sh "$out"/*
