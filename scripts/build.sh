#!/usr/bin/env bash
# Configures and builds the project into ${BUILD_DIR:-build} (Release, Ninja, all cores).
# Extra arguments go to the configure step, e.g. scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES="80;90".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
