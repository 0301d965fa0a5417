#!/usr/bin/env bash
# The test command: installs what is missing, builds everything (the CUDA backend too when the
# toolkit is installed) and runs every test; CUDA cases skip themselves on a machine without a GPU.
# Then the CUDA emulation build runs every test again, the CUDA cases included, with our kernels on
# the CPU's SIMT emulator (scripts/test-emulation.sh), and the sanitized build runs every test and
# each fuzzer (scripts/test-sanitize.sh). All three run to the end; any failing fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
status=0
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" || status=$?
# The distributed tests need MPI (install-deps installs Open MPI): a build without it must not pass.
# (The list is read whole first: grep -q would close the pipe early, which pipefail counts as failure.)
registered=$(ctest --test-dir "${BUILD_DIR:-build}" -N)
if ! grep -q distributed_suite_on_two_ranks <<<"$registered"; then
  echo "test.sh: the build has no MPI, so the 2-rank tests were not run; install libopenmpi-dev and rebuild" >&2
  status=1
fi
scripts/test-emulation.sh || status=$?
scripts/test-sanitize.sh || status=$?
exit $status
