#!/usr/bin/env bash
# Installs the Debian packages the build needs, when they are missing.
# The CUDA toolkit (nvcc, cuBLAS, cuDNN 9, NCCL) is expected to be installed already; it is not a
# Debian package here. Without it the CPU backend alone is built.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config ccache
  libfmt-dev            # formatting and logging
  libgtest-dev libgmock-dev libbenchmark-dev   # tests and micro-benchmarks
  libopenblas-dev       # CPU GEMM (cblas)
  libturbojpeg0-dev     # JPEG decoding (data pipeline)
  libpng-dev            # PNG images and the synthetic dataset's masks
  nlohmann-json3-dev    # safetensors headers, metrics, args.json
  libcli11-dev          # the moco command line
  libopenmpi-dev openmpi-bin  # distributed runs: mpirun, and the collectives on CPU tensors
  clang libomp-dev libboost-context-dev  # the CUDA emulation build (scripts/test-emulation.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
  echo "install-deps: run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have stale or empty package lists: refresh them when a plain install fails.
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
