#!/usr/bin/env bash
# scripts/fuzz.sh NAME SECONDS [libFuzzer flags...]: runs one harness of fuzz/ (fuzz_NAME or NAME)
# for SECONDS on one core, from its committed seeds in fuzz/corpus/NAME/ plus what earlier runs
# found in ${FUZZ_BUILD_DIR}/corpus/NAME/ (new inputs go there, not into the repository). A crash
# leaves the input in ${FUZZ_BUILD_DIR}/findings/; make it a regression test (fuzz/README.md).
# scripts/fuzz.sh --list prints the harnesses' names. Needs the build of scripts/test-sanitize.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
names=$(ls fuzz/fuzz_*.cpp | sed -e 's|fuzz/fuzz_||' -e 's|\.cpp$||')
if [ "${1:-}" = "--list" ]; then echo "$names"; exit 0; fi
if [ $# -lt 2 ]; then
  echo "usage: scripts/fuzz.sh NAME SECONDS [libFuzzer flags]; NAME is one of: $(echo $names)" >&2
  exit 2
fi
name=${1#fuzz_}; seconds=$2; shift 2
grep -qx "$name" <<<"$names" || { echo "fuzz.sh: no harness '$name'; there are: $(echo $names)" >&2; exit 2; }
BUILD_DIR=${FUZZ_BUILD_DIR:-build-sanitize}
binary=$BUILD_DIR/fuzz/fuzz_$name
[ -x "$binary" ] || { echo "fuzz.sh: $binary is not built; run scripts/test-sanitize.sh (or build its folder) first" >&2; exit 2; }
source scripts/sanitizer-options.sh
corpus=$BUILD_DIR/corpus/$name findings=$BUILD_DIR/findings
mkdir -p "$corpus" "$findings"
log=$BUILD_DIR/fuzz_$name.log
# -rss_limit_mb: a reader that allocates far beyond its input is a finding too (the largest seed is
# a few hundred KB). -timeout: one input may take at most 10 s.
if "$binary" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$findings/${name}-" "$@" "$corpus" "fuzz/corpus/$name" >"$log" 2>&1; then
  echo "fuzz.sh: $name: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') inputs in ${seconds} s," \
    "no finding; coverage $(grep -oE 'cov: [0-9]+' "$log" | tail -1)"
else
  tail -40 "$log"
  echo "fuzz.sh: $name FOUND A FAILURE; the input is in $findings/ (log $log)"
  exit 1
fi
