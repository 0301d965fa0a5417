#!/usr/bin/env bash
# The loader benchmark, ours and torchvision's side by side on the same folder of JPEGs:
#   bench/data/run_loader_bench.sh [IMAGES_DIR] [WORKERS] [BUILD_DIR]
# IMAGES_DIR (an image folder, or a root with train/) is written by `moco synth` when missing: 640 images of 400x400 pixels (about the pixel
# count of an average ImageNet photo), so the JPEG decode weighs what it weighs in real training.
# Both sides: MoCo v2 two-view augmentation, batch 32, 224 pixels, 2 warm-up batches, 20 timed.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGES=${1:-/tmp/bench_loader_images}
WORKERS=${2:-1,2}
BUILD_DIR=${3:-build}
if [ ! -e "$IMAGES" ]; then
  "$BUILD_DIR/tools/moco" synth "$IMAGES" --classes 10 --train-per-class 64 --val-per-class 0 --size 400
fi
echo "== $(date -u +%F) $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(nproc) cpus: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
"$BUILD_DIR/bench/bench_loader" --data "$IMAGES" --workers "$WORKERS" --batch-size 32 --size 224 --batches 20
PYTHON=${PYTHON:-python3}
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torchvision" 2>/dev/null && PYTHON=/usr/bin/python3
"$PYTHON" bench/torch_ref/bench_loader.py --data "$IMAGES" --workers "$WORKERS" --batch-size 32 --size 224 --batches 20
