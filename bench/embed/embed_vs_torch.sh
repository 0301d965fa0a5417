#!/usr/bin/env bash
# embed_vs_torch.sh - `moco embed` (deployment without PyTorch) against PyTorch inference of the same
# ResNet-50 at 224 px, decode included on both sides, in images per second:
#
#   bench/embed/embed_vs_torch.sh [--device cpu|cuda] [--images N] [--batch B] [--workers J]
#                                 [--precision fp32|tf32] [--repeats R] [--work DIR]
#                                 [--torch-wait passive|default] [--torch-jit]
#
# Defaults: cpu, N 128, B 32, J 2, fp32, R 3 (CPU) / 2 (CUDA), DIR /tmp/embed-bench. Environment:
# MOCO (default build/tools/moco), PYTHON (default: /usr/bin/python3 when it imports torchvision).
#
# The images: N JPEGs the size of an average ImageNet photo (500x375, one in four 375x500), quality
# 90, smooth gradients, shapes and noise, made once by PIL and kept in DIR/images-N (a later run with
# the same N reuses them). Both sides walk the same folder.
#   engine:  moco embed DIR/images-N --pretrained random -a resnet50 -b B -j J --device D --precision P
#            (J decoding threads, the next batch decoded while the network runs this one; OpenMP on
#            every core)
#   PyTorch: bench/embed/torch_embed.py, the same folder through PIL + torchvision's Resize(256),
#            CenterCrop(224), ToTensor, Normalize in a DataLoader of J worker processes, batch B;
#            torchvision's resnet50 with fc = Identity, eval, inference_mode, f32 NCHW,
#            torch.set_num_threads(nproc)
# OpenMP's wait policy: `moco` runs with OMP_WAIT_POLICY=passive (idle OpenMP threads sleep instead
# of spinning; it re-executes itself with it when the variable is unset, engine/openmp_wait.h), and
# by default the PyTorch twin gets the same (both torch's OpenMP, libgomp, and its DataLoader
# workers share the cores). --torch-wait default runs the twin with the variable unset instead:
# PyTorch untouched, its idle OpenMP threads spinning against its own decoding workers (on 2 cores:
# as fast on a quiet machine, 2-3x slower beside another busy process;
# bench/results/2026-12-07-cpu-embed-vs-torch.txt).
# --torch-jit runs the twin with --jit-optimize (torch.jit.optimize_for_inference: BatchNorm folded,
# oneDNN weights prepacked, warmed up outside the span): PyTorch's own deployment path, beyond the
# eager eval + inference_mode that the comparison is about.
# Each side's img/s is its own report over the same span: from the first batch asked for to the last
# embeddings back in host memory (the engine's last progress line; torch_embed.py's last line).
# Process start, imports, the model's construction, the folder walk and writing the output file are
# outside it on both sides (the wall time of each process is printed beside it, for reference).
#
# Order: one untimed warm-up run of each (page cache, first loads), then R rounds of engine, PyTorch
# alternately. The table has every run, then the median of each side and their ratio (engine /
# PyTorch img/s: above 1, the engine is faster). On a shared machine, run it when nothing else does
# (the load average is printed first and last).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."

DEVICE=cpu IMAGES=128 BATCH=32 WORKERS=2 PRECISION=fp32 REPEATS= WORK=${TMPDIR:-/tmp}/embed-bench TORCH_WAIT=passive TORCH_JIT=()
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --torch-wait) TORCH_WAIT=$2; shift 2 ;;
    --torch-jit) TORCH_JIT=(--jit-optimize); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "embed_vs_torch.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $DEVICE in cpu|cuda) ;; *) echo "--device: cpu or cuda, found '$DEVICE'" >&2; exit 2 ;; esac
case $TORCH_WAIT in passive|default) ;; *) echo "--torch-wait: passive or default, found '$TORCH_WAIT'" >&2; exit 2 ;; esac
export OMP_WAIT_POLICY=passive  # what moco sets for itself anyway
[ -z "$REPEATS" ] && { [ "$DEVICE" = cpu ] && REPEATS=3 || REPEATS=2; }
MOCO=${MOCO:-build/tools/moco}
[ -x "$MOCO" ] || { echo "no $MOCO: build it first (cmake --build build --target moco)" >&2; exit 2; }
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torchvision" 2>/dev/null && PYTHON=/usr/bin/python3
fi
THREADS=$(nproc)
# The commit (GPU_CHECK_COMMIT where the tree has no .git), "+changes" when tracked files differ from it.
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD -- 2>/dev/null || COMMIT+="+changes"
else
  COMMIT=${GPU_CHECK_COMMIT:-unknown}
  COMMIT=${COMMIT:0:12}
fi

# --- the images, once ------------------------------------------------------------------------------
DATA=$WORK/images-$IMAGES
if [ ! -f "$DATA/.complete" ]; then
  mkdir -p "$WORK"
  rm -rf "$DATA.partial"
  "$PYTHON" - "$DATA.partial" "$IMAGES" <<'EOF'
import os, sys
from multiprocessing import Pool
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
out, n = sys.argv[1], int(sys.argv[2])

def make(i):  # image i from its own seed: the same pixels whatever the number of processes
    rng = np.random.default_rng([20261207, i])
    w, h = (375, 500) if i % 4 == 3 else (500, 375)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((x * np.cos(angle) + y * np.sin(angle)) / (w + h) + 0.5)[..., None]
    image = Image.fromarray(np.clip(c0 * (1 - t) + c1 * t, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):  # objects: ellipses and boxes of random colours
        x0, y0 = int(rng.integers(-50, w)), int(rng.integers(-50, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0))).astype(np.float32)
    grain = rng.normal(0, 1, ((h + 1) // 2, (w + 1) // 2, 3)).astype(np.float32)  # texture at two scales
    texture = np.kron(grain, np.ones((2, 2, 1), np.float32))[:h, :w] * 10 + rng.normal(0, 6, (h, w, 3))
    folder = os.path.join(out, f"{i // 100:03d}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(np.clip(pixels + texture, 0, 255).astype(np.uint8)).save(
        os.path.join(folder, f"img_{i:05d}.jpg"), quality=90)

with Pool(os.cpu_count()) as pool:
    pool.map(make, range(n), chunksize=8)
EOF
  touch "$DATA.partial/.complete"
  rm -rf "$DATA"
  mv "$DATA.partial" "$DATA"
fi
BYTES=$(find "$DATA" -name '*.jpg' -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d JPEGs, %.0f KB each on average", n, s / n / 1024 }')

echo "== embed vs PyTorch: $(date -u '+%F %H:%M UTC'), commit $COMMIT, $(nproc) cpus:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
[ "$DEVICE" = cuda ] && echo "   GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo '?')"
echo "   device $DEVICE, precision $PRECISION, threads $THREADS (engine: OpenMP default, one per core; PyTorch: set_num_threads), batch $BATCH, workers $WORKERS, images $IMAGES ($BYTES), $REPEATS rounds"
echo "   OMP_WAIT_POLICY: engine passive; PyTorch $([ "$TORCH_WAIT" = passive ] && echo 'passive (the same)' || echo "unset (PyTorch's default: idle threads spin)")"
echo "   data $DATA; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# run_engine / run_torch LOG: one run; prints "IMG_S WALL_S", or fails with the log's tail.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
torch_cmd=("$PYTHON" bench/embed/torch_embed.py "$DATA" -b "$BATCH" -j "$WORKERS" --threads "$THREADS"
           --device "$DEVICE" --precision "$PRECISION" "${TORCH_JIT[@]}")
engine_cmd=("$MOCO" embed "$DATA" --pretrained random -a resnet50 --out "$WORK/engine.safetensors" -b "$BATCH"
            -j "$WORKERS" --device "$DEVICE" --precision "$PRECISION")
# PyTorch keeps its own libraries (gpu-check.sh's torch_run), when it is defined.
declare -F torch_run >/dev/null || torch_run() { "$@"; }
torch_env=()
[ "$TORCH_WAIT" = default ] && torch_env=(env -u OMP_WAIT_POLICY)
run_engine() {
  local t0 wall rate
  t0=$(now)
  "${engine_cmd[@]}" >"$1" 2>&1 || { tail -15 "$1" >&2; echo "FAIL: moco embed (log $1)" >&2; return 1; }
  wall=$(elapsed "$t0")
  grep -q "^embed: wrote $IMAGES x 2048 " "$1" || { tail -5 "$1" >&2; echo "FAIL: moco embed did not write $IMAGES x 2048" >&2; return 1; }
  rate=$(grep 'img/s' "$1" | tail -1 | awk '{ for (i = 2; i <= NF; i++) if ($i == "img/s") print $(i - 1) }')
  echo "${rate:?no img/s in $1} $wall"
}
run_torch() {
  local t0 wall rate
  t0=$(now)
  torch_run "${torch_env[@]}" "${torch_cmd[@]}" >"$1" 2>&1 || { tail -15 "$1" >&2; echo "FAIL: torch_embed.py (log $1)" >&2; return 1; }
  wall=$(elapsed "$t0")
  rate=$(grep "^torch_embed: $IMAGES images in" "$1" | tail -1 | awk '{ for (i = 2; i <= NF; i++) if ($i == "img/s") print $(i - 1) }')
  echo "${rate:?no img/s in $1} $wall"
}

echo "   engine:  ${engine_cmd[*]}"
echo "   PyTorch: ${torch_cmd[*]}"
read -r w_engine _ < <(run_engine "$WORK/warmup-engine.log")
read -r w_torch _ < <(run_torch "$WORK/warmup-torch.log")
[ -n "$w_engine" ] && [ -n "$w_torch" ] || exit 1
grep -m1 '^torch ' "$WORK/warmup-torch.log" | sed 's/^/   /'
grep -m1 'encoder' "$WORK/warmup-engine.log" | sed 's/^ */   engine: /'
echo "   warm-up (untimed): engine $w_engine img/s, PyTorch $w_torch img/s"
echo
printf '%-6s %-8s %10s %8s\n' round side img/s wall_s
E=() T=()
for r in $(seq 1 "$REPEATS"); do
  read -r rate wall < <(run_engine "$WORK/engine-$r.log") && [ -n "$rate" ] || exit 1
  printf '%-6s %-8s %10s %8s\n' "$r" engine "$rate" "$wall"
  E+=("$rate")
  read -r rate wall < <(run_torch "$WORK/torch-$r.log") && [ -n "$rate" ] || exit 1
  printf '%-6s %-8s %10s %8s\n' "$r" PyTorch "$rate" "$wall"
  T+=("$rate")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
me=$(median "${E[@]}") mt=$(median "${T[@]}")
echo
printf '%-8s %-10s %-6s %-7s %-6s %-7s %-16s %12s %12s %8s\n' device precision batch workers images threads commit \
  "engine img/s" "torch img/s" ratio
printf '%-8s %-10s %-6s %-7s %-6s %-7s %-16s %12s %12s %8s\n' "$DEVICE" "$PRECISION" "$BATCH" "$WORKERS" "$IMAGES" \
  "$THREADS" "$COMMIT" "$me" "$mt" "$(awk -v e="$me" -v t="$mt" 'BEGIN { printf "%.2fx", e / t }')"
echo "(medians of $REPEATS runs; ratio = engine / PyTorch images per second; PyTorch's OMP_WAIT_POLICY $([ "$TORCH_WAIT" = passive ] && echo passive || echo unset)$([ ${#TORCH_JIT[@]} -gt 0 ] && echo ', PyTorch through torch.jit.optimize_for_inference'); load average now $(cut -d' ' -f1-3 /proc/loadavg))"
