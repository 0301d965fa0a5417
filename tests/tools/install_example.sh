#!/usr/bin/env bash
# tests/tools/install_example.sh CMAKE GENERATOR CXX BUILD_DIR WORKDIR WEIGHTS IMAGES: installs the
# build to a fresh prefix (with the CMake, generator and compiler that made the build),
# builds examples/embed against it as a separate project (find_package(MocoEngine)) and runs it,
# without OMP_WAIT_POLICY, as a user's program would start.
# Also checks what a user receives: the headers under include/moco_engine/ only, a package config
# free of this machine's paths, and a library that exports the public API and nothing of the
# engine's insides. Prints "PASS: ..." at the end.
set -uo pipefail
cmake=$1 generator=$2 cxx=$3 build=$4 work=$5 weights=$6 images=$7
unset OMP_WAIT_POLICY
here=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"; mkdir -p "$work"
prefix=$work/prefix
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$prefix" -name 'libmoco_engine.so' | head -1)")
[ -f "$libdir/libmoco_engine.so" ] || fail "no libmoco_engine.so under $prefix"
[ -x "$prefix/bin/moco" ] || fail "the moco command was not installed"
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./moco_engine/encoder.h ./moco_engine/library.h ./moco_engine/moco_engine.h " ] ||
  fail "installed headers: $headers"
grep -rl -e "$here" -e "$build" "$prefix/include" "$libdir/cmake" && fail "an installed file names this machine's paths"
grep -rnE '\bENGINE_[A-Z_]+|#include "(engine|ops|layers|data|ssl)/' "$prefix/include" &&
  fail "an installed header uses a build-only macro or an engine header"
grep -nE "INTERFACE_LINK_LIBRARIES|INTERFACE_COMPILE_DEFINITIONS" "$libdir/cmake/MocoEngine/"*.cmake &&
  fail "the imported target passes a private dependency or a macro on to its users"
needed=$(readelf -d "$libdir/libmoco_engine.so" | grep NEEDED)
grep -qE "libmpi|libnccl" <<<"$needed" && fail "the library needs MPI or NCCL, which embedding never uses: $needed"
# Each public header compiles alone, as strict C++17.
for h in "$prefix"/include/moco_engine/*.h; do
  echo "#include <moco_engine/$(basename "$h")>" | "$cxx" -std=c++17 -Wall -Wextra -pedantic -Werror -fsyntax-only \
    -I"$prefix/include" -x c++ - 2>"$work/header.log" || fail "$(basename "$h") does not compile alone: $(cat "$work/header.log")"
done
leaked=$(nm -DC --defined-only "$libdir/libmoco_engine.so" | grep -vE ' (moco_engine::|typeinfo|vtable|std::|__gnu_cxx::|_init|_fini|_edata|_end|__bss_start)' | grep -E ' (engine::|fmt::|nlohmann|CLI::)' | head -5)
[ -z "$leaked" ] || fail "the library exports the engine's insides: $leaked"

"$cmake" -S "$here/examples/embed" -B "$work/example" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" >"$work/example.log" 2>&1 &&
  "$cmake" --build "$work/example" >>"$work/example.log" 2>&1 || { cat "$work/example.log"; fail "the example does not build"; }
out=$("$work/example/embed_example" "$weights" "$images" 2>&1); rc=$?
[ $rc -eq 0 ] || fail "embed_example exited $rc: $out"
grep -q "cosine similarities of [0-9]* images (0 skipped)" <<<"$out" || fail "embed_example output: $out"
grep -qE " 1\.000" <<<"$out" || fail "an image's similarity to itself is not 1: $out"
out=$("$work/example/embed_example" "$work/no_such_weights.safetensors" "$images" 2>&1) && fail "missing weights accepted"
grep -q "error: .*no_such_weights.safetensors: no such file" <<<"$out" || fail "missing weights message: $out"

if [ $failures -eq 0 ]; then echo "PASS: installed to a fresh prefix; the example found the package, built and embedded"; else exit 1; fi
