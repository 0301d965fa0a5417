#!/usr/bin/env bash
# The main command: installs what is missing, builds, and runs the engine end to end.
# For now that is `moco demo` (a small network trained by the engine's autograd, on the GPU when
# there is one), then a small synthetic dataset and one augmented batch of it, in quickstart-out/;
# it becomes the MoCo quickstart once pretraining and evaluation exist.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
"${BUILD_DIR:-build}/tools/moco" version
"${BUILD_DIR:-build}/tools/moco" demo --device auto
mkdir -p quickstart-out
"${BUILD_DIR:-build}/tools/moco" synth quickstart-out/synth --train-per-class 50 --val-per-class 10 --force
"${BUILD_DIR:-build}/tools/moco" batch quickstart-out/synth --out quickstart-out/batch.safetensors --n 8 --size 64
"${BUILD_DIR:-build}/tools/moco" info quickstart-out/batch.safetensors
