#!/usr/bin/env bash
# The CUDA emulation build and its tests: the CUDA backend compiled by clang for the CPU
# (-DENGINE_CUDA_EMULATION=ON), our kernels executed by the SIMT emulator, every test of the
# project run against it (the CUDA cases, which skip in the ordinary build on a machine without a
# GPU, among them), the CUDA cases of the engine and op suites once more with the threads' order
# shuffled, and a count of the CUDA cases. See docs/ARCHITECTURE.md ("CUDA emulation"). Extra
# arguments go to the configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${EMULATION_BUILD_DIR:-build-emulation}
start=$(date +%s)
BUILD_DIR=$BUILD_DIR scripts/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DENGINE_CUDA_EMULATION=ON \
  -DENGINE_BUILD_BENCH=OFF "$@"
built=$(date +%s)
status=0
# At most 45 minutes for the suite and 10 for each shuffled rerun (CI has 90): a kernel that loops
# forever cannot eat the whole budget.
timeout 45m ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" | tee "$BUILD_DIR/ctest.log" || status=$?
# The CUDA cases of the op and engine suites once more, with every block's threads in an order
# shuffled by a fixed seed: a kernel that is right only in index order fails here.
seed=${ENGINE_CUDA_EMULATION_SEED:-20261206}
for suite in test_engine test_ops test_cuda_emulation; do
  log="$BUILD_DIR/$suite.shuffled.log"
  if ENGINE_CUDA_EMULATION_SEED=$seed OMP_WAIT_POLICY=passive timeout 10m "$BUILD_DIR/tests/$suite" \
    --gtest_filter='*Cuda*' --gtest_brief=1 >"$log" 2>&1; then
    echo "test-emulation: $suite's CUDA cases pass with the threads shuffled (seed $seed)"
  else
    cat "$log"
    echo "test-emulation: $suite FAILED with seed $seed"
    status=1
  fi
done
# The CUDA cases: every test named for CUDA or the emulator, and how each ended.
cuda_lines=$(grep -E "Test +#[0-9]+: [^ ]*([Cc]uda|[Ee]mulat)" "$BUILD_DIR/ctest.log" || true)
count() { grep -c "$1" <<<"$cuda_lines" || true; }
real_size=$(grep -E "CudaRealSize.*Skipped" <<<"$cuda_lines" | wc -l)
echo "test-emulation: CUDA cases on the emulator: $(count ' Passed') passed, $(count 'Failed') failed," \
  "$(count 'Skipped') skipped, of which $real_size are real-size cases for a GPU (each has a small twin" \
  "that ran) and the rest bf16 cases of ops without a bf16 path; build $((built - start)) s," \
  "tests $(($(date +%s) - built)) s"
exit $status
