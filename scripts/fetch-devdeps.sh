#!/usr/bin/env bash
# Downloads the Debian packages the GPU machine lacks into .devdeps/ (ignored by git), for the
# device tool to carry there (see scripts/gpu-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .devdeps
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.devdeps/' "$exclude" 2>/dev/null || echo '/.devdeps/' >> "$exclude"
cd .devdeps
apt-get download libfmt-dev libfmt9 libgtest-dev libgmock-dev libturbojpeg0-dev libturbojpeg0 libpng-dev libpng16-16 zlib1g-dev \
  libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev nlohmann-json3-dev libcli11-dev \
  libgfortran5 libquadmath0  # OpenBLAS links against the Fortran runtime
ls -la
