#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the engine end to end.
# For now that is `moco demo` (a small network trained by the engine's autograd, on the GPU when
# there is one); it becomes the MoCo quickstart once pretraining and evaluation exist.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
"${BUILD_DIR:-build}/tools/moco" version
"${BUILD_DIR:-build}/tools/moco" demo --device auto
