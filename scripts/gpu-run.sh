#!/usr/bin/env bash
# Runs on the GPU machine (through the device tool, with .devdeps carried): unpacks our Debian
# libraries into a private prefix, configures and builds with all cores (a no-op when a warm machine
# already has build-gpu), then runs the stages asked for and leaves their logs in $OUT.
#
#   device run: bash scripts/gpu-run.sh [STAGE...]        carry: [".devdeps"]
#
# Stages: test (ctest, CUDA cases included, and compute-sanitizer on them), bench (every benchmark
# next to its PyTorch baseline), pretrain (60-step ResNet-50 pretrainings, plain and hp), eval (issue
# 7's longer evaluated run, scripts/longer-eval.sh; EVAL_EPOCHS overrides its 150 epochs), loader
# (the data loader against torchvision's). No stage means all of them, in that order. One call may
# run at most 10 minutes, so a fresh lease is best spent as: `test`, then `bench`, then
# `pretrain loader`, then `eval`.
set -uo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(test bench pretrain eval loader)
for stage in "${stages[@]}"; do
  case $stage in test | bench | pretrain | eval | loader) ;; *) echo "gpu-run: unknown stage '$stage'" >&2; exit 2 ;; esac
done
wants() { [[ " ${stages[*]} " == *" $1 "* ]]; }
OUT=${OUT:-out}
mkdir -p "$OUT"
P=/opt/devdeps
mkdir -p $P
for f in .devdeps/*.deb; do dpkg -x "$f" $P; done
source scripts/env.sh
{
  date -u; git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvcc --version | tail -1; which nvcc; g++ --version | head -1
  ls /usr/local/cuda/lib64/libcublas.so /usr/local/cuda/lib64/libcudart_static.a
} 2>&1 | tee "$OUT/device.txt"

# cuDNN and NCCL come with the toolkit there too; when they are only in PyTorch's Python packages,
# point CMake at those.
hints=()
if ! ls /usr/local/cuda/include/cudnn.h >/dev/null 2>&1; then
  root=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])" 2>/dev/null) && hints+=(-DENGINE_CUDNN_ROOT="$root")
fi
if ! ls /usr/local/cuda/include/nccl.h >/dev/null 2>&1; then
  root=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null) && hints+=(-DENGINE_NCCL_ROOT="$root")
fi
export CMAKE_PREFIX_PATH=$P/usr
# Our libraries for our binaries only: PyTorch keeps its own (see the baseline run below).
ENGINE_LD=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread
for lib in "${hints[@]}"; do ENGINE_LD="${lib#*=}/lib:$ENGINE_LD"; done
ORIGINAL_LD=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$ENGINE_LD:$ORIGINAL_LD

BUILD_DIR=build-gpu
cmake -S . -B $BUILD_DIR -G Ninja -DCMAKE_BUILD_TYPE=Release -DCBLAS_INCLUDE_DIR=$P/usr/include/x86_64-linux-gnu/openblas-pthread -DOPENBLAS_LIBRARY=$P/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so "${hints[@]}" 2>&1 | tee "$OUT/configure.log"
cmake --build $BUILD_DIR -j "$(nproc)" > "$OUT/build-full.log" 2>&1; rc=$?
tail -50 "$OUT/build-full.log" > "$OUT/build.log"
if [ $rc -ne 0 ]; then tail -50 "$OUT/build.log"; exit $rc; fi
$BUILD_DIR/tools/moco version 2>&1 | tee -a "$OUT/device.txt"

if wants test; then
ctest --test-dir $BUILD_DIR --output-on-failure -j 8 2>&1 | tee "$OUT/ctest.log" | tail -30
# Out-of-bounds and race checks of every CUDA case, once.
for suite in test_engine test_ops test_layers test_data test_ssl; do
  compute-sanitizer --tool memcheck --error-exitcode 1 $BUILD_DIR/tests/$suite --gtest_filter='*Cuda*' 2>&1 | tail -5
done | tee "$OUT/sanitizer.log"
$BUILD_DIR/tools/moco demo --device cuda 2>&1 | tee "$OUT/demo.log" | tail -3
grep -E "tests passed|tests failed" "$OUT/ctest.log"
fi

if wants bench; then
{
  echo "== engine =="; $BUILD_DIR/bench/bench_ops --device all
  echo; echo "== PyTorch baseline =="; LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_ops.py --device all
  echo; echo "== engine: ResNet ops =="; $BUILD_DIR/bench/bench_resnet_ops --device cuda
  echo; echo "== PyTorch baseline: ResNet ops =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_resnet_ops.py --device cuda
  echo; echo "== engine: flat updates and index_select =="; $BUILD_DIR/bench/bench_flat_ops --device cuda
  echo; echo "== PyTorch baseline: flat updates and index_select =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_flat_ops.py --device cuda
  echo; echo "== engine: InfoNCE loss and l2_normalize =="; $BUILD_DIR/bench/bench_infonce --device all
  echo; echo "== PyTorch baseline: InfoNCE loss and l2_normalize =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_infonce.py --device all
  echo; echo "== engine: fused saliency masking (256 views, 224 px) =="
  $BUILD_DIR/bench/bench_saliency_mask --device cuda
  echo; echo "== PyTorch baseline: the reference's masking loops on the same batch =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_saliency_mask.py --device cuda
  echo; echo "== engine: one ResNet training step =="; $BUILD_DIR/bench/bench_resnet_step --device cuda --case all
  echo; echo "== PyTorch baseline: the same step =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_resnet_step.py --device cuda --case all
  echo; echo "== engine: one MoCo v2 step (ResNet-50, 224 px, batch 128 in 4 virtual GPUs) =="
  $BUILD_DIR/bench/bench_moco_step --device cuda
  echo; echo "== PyTorch baseline: the reference's MoCo step on the same batch =="
  LD_LIBRARY_PATH=$ORIGINAL_LD python3 bench/torch_ref/bench_moco_step.py --device cuda
} 2>&1 | tee "$OUT/bench.log"
fi

if wants pretrain; then
# Pretraining end to end on the GPU: ResNet-50 at 224 pixels, batch 128 as 4 virtual GPUs of 32,
# the MoCo v2 recipe, on synthetic photo-sized images; 60 steps with a checkpoint at the end.
rm -rf /tmp/pretrain_run /tmp/pretrain_hp_run
$BUILD_DIR/tools/moco synth /tmp/pretrain_images --classes 10 --train-per-class 256 --val-per-class 8 --size 256 --force >/dev/null
$BUILD_DIR/tools/moco pretrain /tmp/pretrain_images --save-dir /tmp/pretrain_run -a resnet50 -b 128 --bn-groups 4 \
  --lr 0.015 --mlp --moco-t 0.2 --aug-plus --cos --epochs 200 --max-steps 60 -p 10 -j 16 --device cuda 2>&1 \
  | tee "$OUT/pretrain_gpu.log" | tail -12
# The paper's method on the GPU: the same run with hp masking, saliency from the key encoder and
# one hard negative weighted by alpha 2 (spec 6.8), 60 steps; its images/ show the masks.
$BUILD_DIR/tools/moco pretrain /tmp/pretrain_images --save-dir /tmp/pretrain_hp_run -a resnet50 -b 128 --bn-groups 4 \
  --lr 0.015 --mlp --moco-t 0.2 --aug-plus --cos --epochs 200 --max-steps 60 -p 10 -j 16 --device cuda \
  --strategy hp --alpha 2 --num-nonsem 1 2>&1 | tee "$OUT/pretrain_hp_gpu.log" | tail -12
cp /tmp/pretrain_hp_run/images/epoch_0000.jpg "$OUT/pretrain_hp_masks_epoch0.jpg" 2>/dev/null
fi

if wants eval; then
EVAL_EPOCHS=${EVAL_EPOCHS:-150} scripts/longer-eval.sh $BUILD_DIR/tools/moco cuda /tmp/longer_eval 2>&1 | tee "$OUT/eval_gpu.log"
fi

if wants loader; then
# The data loader next to torchvision's DataLoader on the same JPEGs (photo-sized synthetic images).
bash bench/data/run_loader_bench.sh /tmp/bench_loader_images "1,4,8,16" $BUILD_DIR 2>&1 | tee "$OUT/bench_loader.log"
fi
