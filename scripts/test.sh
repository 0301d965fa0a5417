#!/usr/bin/env bash
# The test command: installs what is missing, builds everything (the CUDA backend too when the
# toolkit is installed) and runs every test. CUDA cases skip themselves on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
