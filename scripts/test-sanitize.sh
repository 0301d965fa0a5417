#!/usr/bin/env bash
# The checked build and its runs: every library, test and tool built by clang with
# AddressSanitizer and UndefinedBehaviorSanitizer (CUDA off: the CPU backend), the whole test suite
# run against it, then each libFuzzer harness of fuzz/ for FUZZ_SECONDS (default 20) from its
# committed seeds. Any sanitizer report fails the run (-fno-sanitize-recover). Extra arguments go to
# the configure step. MPI is off here: LeakSanitizer reports Open MPI's own never-freed allocations;
# the distributed code runs on two ranks in the ordinary and emulation builds.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SANITIZE_BUILD_DIR:-build-sanitize}
start=$(date +%s)
BUILD_DIR=$BUILD_DIR scripts/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DENGINE_CUDA=OFF \
  -DENGINE_SANITIZE=ON -DENGINE_BUILD_FUZZERS=ON -DENGINE_BUILD_BENCH=OFF -DENGINE_MPI=OFF "$@"
built=$(date +%s)
source scripts/sanitizer-options.sh
status=0
timeout 40m ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" | tee "$BUILD_DIR/ctest.log" || status=$?
tested=$(date +%s)
# A fixed seed (FUZZ_SEED) makes what CI tries the same run to run, so a finding there is reproducible;
# scripts/fuzz.sh run by hand draws a new one each time.
for harness in $(scripts/fuzz.sh --list); do
  FUZZ_BUILD_DIR=$BUILD_DIR scripts/fuzz.sh "$harness" "${FUZZ_SECONDS:-20}" -seed="${FUZZ_SEED:-1}" || status=1
done
echo "test-sanitize: build $((built - start)) s, tests $((tested - built)) s, fuzzers $(($(date +%s) - tested)) s;" \
  "exit $status"
exit $status
