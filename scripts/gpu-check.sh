#!/usr/bin/env bash
# gpu-check.sh - everything a GPU lease should check, in ONE device call that fits its time box:
# look at the machine and build, the CUDA cases of every test suite, what a new user runs first,
# the whole MoCo step and the ResNet ops next to their PyTorch twins, and compute-sanitizer over
# our kernels' tests. It prints one summary table LAST and writes it to $OUT/summary.txt.
#
# The one device call (a lease is 15 minutes of device time in all, machine start included, and
# one call may run 10 minutes):
#
#   tool `run`, command: GPU_CHECK_COMMIT=<git rev-parse HEAD> bash scripts/gpu-check.sh
#               carry: [".devdeps"]      timeout_s: 590
# (the device's copy of the tree has no .git: the commit is passed in for the log)
#
# .devdeps holds our Debian libraries as .deb files (scripts/fetch-devdeps.sh fetches them here);
# they are unpacked into /opt/devdeps there. cuDNN and NCCL are taken from the CUDA toolkit, or
# else from PyTorch's pip packages (nvidia.cudnn, nvidia.nccl). TurboJPEG is found by CMake through
# pkg-config: the .pc file's absolute /usr paths are redirected to /opt/devdeps, and where the
# machine has no pkg-config a small stand-in that reads the carried .pc files answers instead.
#
#   bash scripts/gpu-check.sh --rehearse
# runs the same steps on a machine without a GPU: a CPU build (-DENGINE_CUDA=OFF) in
# build-rehearse/, --device cpu, tiny sizes (the benchmarks' --quick, a few pretraining steps); the
# GPU-only tools (nvidia-smi, compute-sanitizer, PyTorch twins without torch) are skipped and the
# table says so. It finds this script's own mistakes before a lease is spent on them.
#
# Steps, in order (each under `timeout`; its output goes to one of the 8 files $OUT may return):
#   1. look and build    devdeps, look (device.txt), configure, build (build.log), moco version
#   2. CUDA test cases   build-gpu/tests/test_X --gtest_filter='*Cuda*:*CUDA*', per suite (tests.log)
#      distributed       the whole distributed suite (test_distributed) as one process, its CUDA cases
#                        on the GPU and NCCL on one rank; bench_collectives --device cuda: NCCL's
#                        all_reduce and all_gather at world size 1 from 4 KiB to 64 MiB (tests.log)
#   3. first run         moco demo; the quickstart's pretraining at its own scale (first-run.log)
#   4. MoCo step         bench_moco_step and its PyTorch twin, fp32; then SimCLR: bench_simclr_step
#                        and bench_nt_xent with their twins, fp32; then the MoCo step in bf16 (the
#                        twin in autocast bf16 + channels_last) and tf32, as time allows (moco-step.log);
#                        the engine's plain step runs as a CUDA graph (--cuda-graphs auto)
#   5. ResNet ops        bench_resnet_ops and its PyTorch twin, fp32 (resnet-ops.log)
#   6. sanitizer         compute-sanitizer memcheck over test_ops and test_engine's CUDA cases
#                        without the real-size cases and the deliberate out-of-memory (sanitizer.log)
#   7. embed vs PyTorch  bench/embed/embed_vs_torch.sh --device cuda: `moco embed` (ResNet-50, 224 px,
#                        decode included) against torchvision's DataLoader + resnet50 in inference_mode,
#                        2048 JPEGs of 500x375, batch 256, 8 decoding threads / workers, fp32; last, so
#                        that it runs on what time is left (resnet-ops.log)
#
# Budget: GPU_CHECK_BUDGET seconds from the script's start (570 by default; 1800, and every cap x3,
# for --rehearse). Each step runs under `timeout` for min(its own cap, time left - GPU_CHECK_RESERVE
# (15 s)), and is skipped with a "skipped: N s left" row when that is less than the step's useful
# minimum; tf32 runs only while GPU_CHECK_TF32_LEFT (330) s are left, enough for steps 5 and 6.
# Every step's exit code is kept; the script exits 1 when a step failed or timed out, 0 otherwise
# (skips are not failures). Also: OUT (default ./gpu-check-out), GPU_CHECK_RESERVE,
# GPU_CHECK_PRETRAIN_STEPS (the pretraining's --max-steps on the GPU, 200 by default),
# GPU_CHECK_PREFIX (where the .debs are unpacked on the GPU machine, /opt/devdeps by default).
set -uo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.." || exit 2

REHEARSE=0
case "${1:-}" in
  "") ;;
  --rehearse) REHEARSE=1 ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: scripts/gpu-check.sh [--rehearse]" >&2; exit 2 ;;
esac

# The rehearsal's CPU build and CPU runs are slower than the GPU machine's 16 cores: there the
# budget and every step's cap are 3 times larger (the timeouts are still rehearsed).
if [ "${1:-}" = --rehearse ]; then BUDGET=${GPU_CHECK_BUDGET:-1800} CAP_SCALE=3; else BUDGET=${GPU_CHECK_BUDGET:-570} CAP_SCALE=1; fi
RESERVE=${GPU_CHECK_RESERVE:-15}
if [ -z "${OUT:-}" ]; then
  OUT=gpu-check-out
  rm -rf "$OUT"
  mkdir -p "$OUT"
  echo '*' >"$OUT/.gitignore"  # a local run's logs stay out of git (the device's $OUT is elsewhere)
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ $REHEARSE = 1 ]; then
  MODE=rehearsal DEV=cpu QUICK=--quick BUILD_DIR=build-rehearse P=$PWD/build-rehearse/devdeps
  WORK=${TMPDIR:-/tmp}/gpu-check-rehearse
else
  MODE=device DEV=cuda QUICK='' BUILD_DIR=build-gpu P=${GPU_CHECK_PREFIX:-/opt/devdeps}
  WORK=${TMPDIR:-/tmp}/gpu-check
fi
rm -rf "$WORK"
mkdir -p "$WORK"
source scripts/env.sh  # nvcc on PATH when the toolkit is in /usr/local/cuda
ORIGINAL_LD_SET=${LD_LIBRARY_PATH+1}
ORIGINAL_LD=${LD_LIBRARY_PATH:-}
export OMP_WAIT_POLICY=passive PYTHONUNBUFFERED=1 GTEST_COLOR=no
export BUILD_DIR DEV QUICK WORK P REHEARSE OUT

# --- the table ---------------------------------------------------------------------------------
ROWS=()     # "name<TAB>status<TAB>seconds<TAB>key"
FAILED=0
LOG=device.txt  # the $OUT file the next steps write to (set by `log`)
LAST_OUT=   # the last step's output alone
LAST_RC=    # and its exit code
MIN_S=10    # the least useful time of a step; `MIN_S=60 step ...` raises it for one step

log() { LOG=$1; }
logfile() { if [[ $LOG == */* ]]; then echo "$LOG"; else echo "$OUT/$LOG"; fi; }
left() { echo $((BUDGET - SECONDS)); }
row() { ROWS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"${4//$'\t'/ }"); }
# key TEXT: replaces the key result of the last row.
key() {
  local last=${ROWS[-1]} name status secs
  IFS=$'\t' read -r name status secs _ <<<"$last"
  ROWS[-1]="$name"$'\t'"$status"$'\t'"$secs"$'\t'"$1"
}
last_status() { local s; IFS=$'\t' read -r _ s _ <<<"${ROWS[-1]}"; echo "$s"; }

# skip NAME REASON: a row for a step that does not run here.
skip() {
  row "$1" skipped 0 "$2"
  LAST_OUT=/dev/null LAST_RC=skipped
  echo "== $1: skipped ($2)" >>"$(logfile)"
  echo "-- $1: skipped ($2)"
}

# step NAME CAP CMD...: runs CMD (a program or a function of this script) under `timeout` for
# min(CAP, time left - RESERVE) seconds, its output appended to $OUT/$LOG (a path with a '/' is
# used as is) and kept alone in $LAST_OUT; records pass/FAIL/timeout, the seconds, and the last
# line of output as the key result (the caller may replace it with `key`). A program given as a
# path that was not built is skipped.
step() {
  local name=$1 cap=$2 t left rc t0 status logfile
  shift 2
  left=$(left)
  t=$((left - RESERVE))
  ((cap *= CAP_SCALE, t > cap)) && t=$cap
  if ((t < MIN_S)); then skip "$name" "skipped: $left s left"; return 0; fi
  if [[ $1 == */* && ! -x $1 ]]; then skip "$name" "not built: $1"; return 0; fi
  logfile=$(logfile)
  LAST_OUT=$WORK/step-${#ROWS[@]}.out
  echo "-- $name (up to $t s)"
  echo "== $name: $*" >>"$logfile"
  t0=$SECONDS
  if declare -F "$1" >/dev/null; then
    timeout -k 10 "$t" bash -c '"$@"' _ "$@" 2>&1 | tee "$LAST_OUT" >>"$logfile"
  else
    timeout -k 10 "$t" "$@" 2>&1 | tee "$LAST_OUT" >>"$logfile"
  fi
  rc=${PIPESTATUS[0]} LAST_RC=$rc
  case $rc in
    0) status=pass ;;
    124 | 137) status=timeout FAILED=1 ;;
    *) status=FAIL FAILED=1 ;;
  esac
  echo "== $name: $status (exit $rc, $((SECONDS - t0)) s)" >>"$logfile"
  row "$name" "$status" $((SECONDS - t0)) "$( (grep -v '^\s*$' "$LAST_OUT" || true) | tail -1 | cut -c1-110)"
  case $status in
    timeout) key "timed out at $t s; last: $( (grep -v '^\s*$' "$LAST_OUT" || true) | tail -1 | cut -c1-80)" ;;
    FAIL) key "exit $rc: $( (grep -v '^\s*$' "$LAST_OUT" || true) | tail -1 | cut -c1-90)" ;;
  esac
  return 0
}

finish() {
  trap - TERM INT
  local line name status secs k
  {
    echo
    echo "gpu-check ($MODE) of commit $(git rev-parse --short HEAD 2>/dev/null || echo "${GPU_CHECK_COMMIT:-? (no .git here; pass GPU_CHECK_COMMIT)}"), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "on: ${DEVICE_LINE:-unknown}; budget ${BUDGET} s, used ${SECONDS} s; logs in $OUT"
    printf '%-28s %-8s %5s  %s\n' step status secs "key result"
    for line in "${ROWS[@]}"; do
      IFS=$'\t' read -r name status secs k <<<"$line"
      printf '%-28s %-8s %5s  %s\n' "$name" "$status" "$secs" "$k"
    done
    if [ $FAILED = 0 ]; then echo "result: no step failed"; else echo "result: FAILED (a step failed or timed out)"; fi
  } | tee "$OUT/summary.txt"
  exit $FAILED
}
trap 'row "(stopped by a signal)" FAIL 0 "at $SECONDS s"; FAILED=1; finish' TERM INT

# Numbers out of the logs, or nothing when the line is missing.
# field_before FILE TEXT WORD: the field just before WORD on the first line that contains TEXT
# (plain text, no regex: awk flavours differ on escapes in -v).
field_before() { awk -v s="$2" -v w="$3" 'index($0, s) { for (i = 2; i <= NF; i++) if ($i == w) { print $(i - 1); exit } }' "$1" 2>/dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }'; }
# gtest_counts FILE: "P passed, F failed, S skipped" from gtest's closing lines.
gtest_counts() {
  local p f s
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
  s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$1" | tail -1)
  if [ -z "$p" ]; then echo "no gtest summary (crashed?)"; return; fi
  echo "${p} passed, ${f:-0} failed, ${s:-0} skipped$(grep -m1 '^\[  FAILED  \] [A-Za-z]' "$1" | sed 's/^\[  FAILED  \] / first failure: /' | cut -c1-60)"
}

# --- 1. look and build -------------------------------------------------------------------------
# A stand-in for pkg-config, for a machine without one: answers CMake's queries from the .pc files
# on PKG_CONFIG_PATH (variables, --define-variable, Cflags/Libs and their -only- parts).
write_pkg_config_standin() {
  cat >"$WORK/pkg-config" <<'EOF'
#!/usr/bin/env python3
import os, re, sys
defs, mods, opts = {}, [], []
for a in sys.argv[1:]:
    if a.startswith("--define-variable="):
        k, _, v = a[len("--define-variable="):].partition("=")
        defs[k] = v
    elif a.startswith("-"):
        opts.append(a)
    elif not re.match(r"^[<>=!]+$|^[0-9.]+$", a):
        mods.append(a)
if "--version" in opts:
    print("0.29.2")
    sys.exit(0)
def load(name):
    for d in os.environ.get("PKG_CONFIG_PATH", "").split(":") + os.environ.get("PKG_CONFIG_LIBDIR", "").split(":"):
        f = os.path.join(d, name + ".pc")
        if d and os.path.isfile(f):
            v, fields = dict(pcfiledir=d), {}
            expand = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: defs.get(m.group(1), v.get(m.group(1), "")), s)
            for line in open(f):
                line = line.split("#")[0].strip()
                m = re.match(r"^(\w+)\s*=\s*(.*)$", line)
                if m:
                    v[m.group(1)] = defs.get(m.group(1), expand(m.group(2)))
                    continue
                m = re.match(r"^([\w.]+)\s*:\s*(.*)$", line)
                if m:
                    fields[m.group(1)] = expand(m.group(2))
            return v, fields
    return None
found = {m: load(m) for m in mods}
missing = [m for m, r in found.items() if r is None]
if missing:
    if "--print-errors" in opts:
        print("Package %s was not found (pkg-config stand-in of scripts/gpu-check.sh)" % missing[0], file=sys.stderr)
    sys.exit(1)
out = []
for m, (v, fields) in found.items():
    libs = fields.get("Libs", "").split() + (fields.get("Libs.private", "").split() if "--static" in opts else [])
    cflags = fields.get("Cflags", "").split()
    for o in opts:
        if o == "--modversion": out.append(fields.get("Version", ""))
        elif o.startswith("--variable="): out.append(v.get(o.split("=", 1)[1], ""))
        elif o == "--libs": out += libs
        elif o == "--libs-only-l": out += [x for x in libs if x.startswith("-l")]
        elif o == "--libs-only-L": out += [x for x in libs if x.startswith("-L")]
        elif o == "--libs-only-other": out += [x for x in libs if not x.startswith(("-l", "-L"))]
        elif o == "--cflags": out += cflags
        elif o == "--cflags-only-I": out += [x for x in cflags if x.startswith("-I")]
        elif o == "--cflags-only-other": out += [x for x in cflags if not x.startswith("-I")]
if out:
    print(" ".join(out))
EOF
  chmod +x "$WORK/pkg-config"
}

# Unpacks the carried .deb files and checks that pkg-config (or the stand-in) sends TurboJPEG to them.
unpack_devdeps() {
  local debs=(.devdeps/*.deb) f inc lib
  eval "PKG_CONFIG_ARGS=($PKG_CONFIG_ARGS_WORDS)"  # arrays do not cross into the child bash
  mkdir -p "$P"
  for f in "${debs[@]}"; do dpkg -x "$f" "$P" || return 1; done
  echo "${#debs[@]} packages unpacked into $P"
  echo "pkg-config: $PKG_CONFIG_EXE ${PKG_CONFIG_ARGS[*]}"
  PKG_CONFIG_PATH=$DEVDEPS_PC "$PKG_CONFIG_EXE" "${PKG_CONFIG_ARGS[@]}" --modversion --cflags --libs libturbojpeg || return 1
  inc=$(PKG_CONFIG_PATH=$DEVDEPS_PC "$PKG_CONFIG_EXE" "${PKG_CONFIG_ARGS[@]}" --cflags-only-I libturbojpeg | awk '{ print substr($1, 3) }')
  lib=$(PKG_CONFIG_PATH=$DEVDEPS_PC "$PKG_CONFIG_EXE" "${PKG_CONFIG_ARGS[@]}" --libs-only-L libturbojpeg | awk '{ print substr($1, 3) }')
  ls "$inc/turbojpeg.h" "$lib/libturbojpeg.so" || return 1
  if [ "$PKG_CONFIG_EXE" != "$WORK/pkg-config" ]; then  # the stand-in must give the same answer
    echo "stand-in: $(PKG_CONFIG_PATH=$DEVDEPS_PC "$WORK/pkg-config" "${PKG_CONFIG_ARGS[@]}" --modversion --cflags --libs libturbojpeg)"
  fi
  echo "TurboJPEG $(PKG_CONFIG_PATH=$DEVDEPS_PC "$PKG_CONFIG_EXE" "${PKG_CONFIG_ARGS[@]}" --modversion libturbojpeg) from $inc"
}

look() {
  date -u
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo "${GPU_CHECK_COMMIT:-unknown (no .git here; pass GPU_CHECK_COMMIT)}")"
  uname -a
  echo "cores: $(nproc)"
  if [ $REHEARSE = 1 ]; then
    echo "nvidia-smi: skipped (rehearsal)"
  else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvidia-smi
  fi
  echo "nvcc: $(command -v nvcc || echo none) $(nvcc --version 2>/dev/null | tail -2 | tr '\n' ' ')"
  echo "compute-sanitizer: $(command -v compute-sanitizer || echo none)"
  echo "cmake: $(cmake --version | head -1); ninja: $(ninja --version 2>/dev/null || echo none); $(g++ --version | head -1)"
  echo "pkg-config: $(command -v pkg-config || echo 'none: the stand-in answers CMake')"
  echo "cuDNN: ${CUDNN_WHERE}"
  echo "NCCL: ${NCCL_WHERE}"
  echo "python: $(command -v "$PYTHON") ${TORCH_LINE}"
  echo "LD_LIBRARY_PATH for our binaries: ${LD_LIBRARY_PATH:-(unset)}"
  echo "LD_LIBRARY_PATH for PyTorch: ${ORIGINAL_LD:-(unset)}"
  echo "configure flags: $CMAKE_FLAGS_STR"
}

# cuDNN / NCCL: the toolkit's, else PyTorch's pip package (nvidia.cudnn, nvidia.nccl).
# find_pip_root MODULE HEADER: the folder that holds include/HEADER in that package.
find_pip_root() {
  local root h
  root=$(timeout 60 python3 -c "import $1 as m; print(list(m.__path__)[0])" 2>/dev/null) || return 1
  if [ -f "$root/include/$2" ]; then echo "$root"; return 0; fi
  h=$(find "$(dirname "$root")" -name "$2" -path '*include*' 2>/dev/null | head -1)
  [ -n "$h" ] && dirname "$(dirname "$h")"
}

echo "gpu-check ($MODE): budget $BUDGET s, logs in $OUT"
CMAKE_FLAGS=()
ENGINE_LD=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-pthread
CUDNN_WHERE="not looked for (rehearsal: CPU build)" NCCL_WHERE=$CUDNN_WHERE
if [ $REHEARSE = 1 ]; then
  CMAKE_FLAGS+=(-DENGINE_CUDA=OFF)  # this machine's own libraries; .devdeps is only unpacked and queried
else
  cuda_inc=$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")/include
  for pair in "CUDNN nvidia.cudnn cudnn.h" "NCCL nvidia.nccl nccl.h"; do
    read -r what module header <<<"$pair"
    if [ -f "$cuda_inc/$header" ] || [ -f "/usr/local/cuda/include/$header" ]; then
      where="with the CUDA toolkit ($cuda_inc)"
    elif root=$(find_pip_root "$module" "$header"); then
      where="PyTorch's pip package $module: $root"
      CMAKE_FLAGS+=("-DENGINE_${what}_ROOT=$root")
      ENGINE_LD=$root/lib:$ENGINE_LD
    else
      where="NOT FOUND (neither $cuda_inc/$header nor python3's $module)"
    fi
    if [ "$what" = CUDNN ]; then CUDNN_WHERE=$where; else NCCL_WHERE=$where; fi
  done
  export CMAKE_PREFIX_PATH=$P/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  CMAKE_FLAGS+=(-DCBLAS_INCLUDE_DIR="$P/usr/include/x86_64-linux-gnu/openblas-pthread"
                -DOPENBLAS_LIBRARY="$P/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so")
  # Our libraries for our binaries only: PyTorch keeps its own (the twins run with ORIGINAL_LD).
  export LD_LIBRARY_PATH=$ENGINE_LD${ORIGINAL_LD:+:$ORIGINAL_LD}
fi
# TurboJPEG through pkg-config: the carried .pc says /usr; point its libdir and includedir at $P.
write_pkg_config_standin
PKG_CONFIG_EXE=$(command -v pkg-config || echo "$WORK/pkg-config")
PKG_CONFIG_ARGS=(--define-variable=libdir="$P/usr/lib/x86_64-linux-gnu" --define-variable=includedir="$P/usr/include")
DEVDEPS_PC=$P/usr/lib/x86_64-linux-gnu/pkgconfig:$P/usr/share/pkgconfig
PKG_CONFIG_ARGS_WORDS=${PKG_CONFIG_ARGS[*]@Q}
export PKG_CONFIG_EXE DEVDEPS_PC PKG_CONFIG_ARGS_WORDS
if [ $REHEARSE = 0 ]; then
  export PKG_CONFIG_PATH=$DEVDEPS_PC${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  CMAKE_FLAGS+=(-DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG_EXE" "-DPKG_CONFIG_ARGN=$(IFS=';'; echo "${PKG_CONFIG_ARGS[*]}")")
fi
torch_run() {  # PyTorch keeps its own libraries: the twins run with the original LD_LIBRARY_PATH
  if [ -n "$ORIGINAL_LD_SET" ]; then LD_LIBRARY_PATH=$ORIGINAL_LD "$@"; else env -u LD_LIBRARY_PATH "$@"; fi
}
export ORIGINAL_LD_SET
export -f torch_run
# The Python with PyTorch: python3, or the system's (Debian's python3-torch) when another python3
# comes first on PATH (pyenv, say); GPU_CHECK_PYTHON chooses.
PYTHON=${GPU_CHECK_PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3 /usr/bin/python3; do
    if torch_run timeout 90 "$candidate" -c 'import torch, torchvision' >/dev/null 2>&1; then
      PYTHON=$candidate
      break
    fi
  done
  PYTHON=${PYTHON:-python3}
fi
export PYTHON
TORCH_LINE=$( (torch_run timeout 90 "$PYTHON" -c \
  'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())') 2>&1 | tail -1)
HAVE_TORCH=0
[[ $TORCH_LINE == torch* ]] && HAVE_TORCH=1
# export for the functions `step` runs in a child bash
export -f unpack_devdeps look
export CMAKE_FLAGS_STR="${CMAKE_FLAGS[*]}" CUDNN_WHERE NCCL_WHERE TORCH_LINE ORIGINAL_LD
if [ $REHEARSE = 1 ]; then DEVICE_LINE="this CPU machine ($(nproc) cores), rehearsal"; else
  DEVICE_LINE=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
  DEVICE_LINE=${DEVICE_LINE:-no GPU answered nvidia-smi}
fi

log device.txt
if compgen -G '.devdeps/*.deb' >/dev/null; then
  step "devdeps" 60 unpack_devdeps
  [ "$(last_status)" = pass ] && key "$(grep -c . <<<"$(ls .devdeps/*.deb)") debs into $P; $(grep '^TurboJPEG' "$LAST_OUT" | sed 's/ from .*//') via $(command -v pkg-config >/dev/null && echo pkg-config || echo 'the pkg-config stand-in')"
elif [ $REHEARSE = 1 ]; then
  skip "devdeps" "no .devdeps here (scripts/fetch-devdeps.sh): this machine's libraries"
else
  row "devdeps" FAIL 0 "no .devdeps carried: run scripts/fetch-devdeps.sh, carry [\".devdeps\"]"
  FAILED=1
fi

step "look" 60 look
if [ "$(last_status)" != pass ]; then :
elif [ $REHEARSE = 1 ]; then key "rehearsal: no nvidia-smi; $(grep -m1 '^pkg-config' "$LAST_OUT" | cut -c1-50); $([ $HAVE_TORCH = 1 ] && echo "${TORCH_LINE:0:40}" || echo 'no torch')"
else key "$DEVICE_LINE; nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'); cuDNN ${CUDNN_WHERE%%:*}"; fi

log build.log
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
MIN_S=30 step "configure ($BUILD_DIR)" 120 cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  "${CMAKE_FLAGS[@]}"
found=$(sed -n 's/.*\[x\] \(CUDA\|cuDNN\|NCCL\|TurboJPEG\): \([^ ,(]*\).*/\1 \2/p' "$LAST_OUT" | tr '\n' ' ')
missing=$(sed -n 's/.*\[ \] \([A-Za-z0-9-]*\):.*/\1/p' "$LAST_OUT" | tr '\n' ' ')
if [ "$(last_status)" = pass ]; then
  missing=${missing% }
  key "found: ${found% }; missing: ${missing:-none}"
  if [ $REHEARSE = 0 ] && [[ " $found " != *" CUDA "* || " $found " != *" cuDNN "* ]]; then
    ROWS[-1]=${ROWS[-1]/$'\t'pass$'\t'/$'\t'FAIL$'\t'}; key "GPU build without CUDA or cuDNN: ${missing}"; FAILED=1
  fi
fi

TARGETS=(test_engine test_ops test_layers test_data test_ssl test_distributed moco bench_moco_step bench_simclr_step
         bench_nt_xent bench_resnet_ops bench_collectives)
if [ "$(last_status)" != skipped ] && [ "$LAST_RC" = 0 ]; then  # cmake itself succeeded
  build_log=$BUILD_DIR/gpu-check-build.log
  : >"$build_log"
  LOG=$build_log MIN_S=60 step "build ($(nproc) cores, ${#TARGETS[@]} targets)" 400 \
    cmake --build "$BUILD_DIR" -j "$(nproc)" --target "${TARGETS[@]}"
  { echo "== build: the last 80 lines of $build_log"; tail -n 80 "$build_log"; } >>"$OUT/build.log"
  if [ "$(last_status)" = pass ] && grep -q 'no work to do' "$build_log"; then
    key "up to date (ninja: no work to do)"
  elif [ "$(last_status)" = pass ]; then
    key "$(grep -c '^\[[0-9]*/[0-9]*\]' "$build_log") build steps; last: $(grep '^\[[0-9]*/[0-9]*\]' "$build_log" | tail -1 | cut -c1-70)"
  elif [ "$(last_status)" = FAIL ] && grep -q -E 'error|Error' "$build_log"; then
    key "$(grep -m1 -E 'error|Error' "$build_log" | cut -c1-100)"
  fi
else
  skip "build" "configure failed"
fi
MOCO=$BUILD_DIR/tools/moco
log device.txt
step "moco version" 30 "$MOCO" version
[ "$(last_status)" = pass ] && key "$(grep -E 'CUDA backend|GPUs visible' "$LAST_OUT" | paste -sd ';' | sed 's/ *;/; /g')"

# --- 2. the CUDA cases of every test suite -------------------------------------------------------
# CUDA cases have Cuda or CUDA in their names (the real-size ones *CudaRealSize*), but for one.
TEST_FILTER='--gtest_filter=*Cuda*:*CUDA*:Module.FlatParametersMoveToTheGpuAsOneBuffer'
log tests.log
for suite in test_engine test_ops test_layers test_data test_ssl; do
  MIN_S=20 step "tests $suite" 150 "$BUILD_DIR/tests/$suite" "$TEST_FILTER"
  [ "$(last_status)" = skipped ] || key "$(gtest_counts "$LAST_OUT")"
done

# The distributed suite, whole, as one process (without mpirun: the local world; its collective
# tests hold for any world size, and its CUDA cases run NCCL on one rank); then NCCL's bandwidth
# at world size 1 (--device cuda; the rehearsal's DEV=cpu times the one-process world instead).
collectives_key() {  # the largest all_reduce row: time, algbw and the copy of the same bytes
  awk '/^all_reduce/ { on = 1; sub(/.*: /, ""); who = $0; next } /^all_gather/ { on = 0 }
       on && $2 ~ /iB$/ { size = $1 " " $2; t = $4; algbw = $5; copy = $10 } /skipped/ { skipped = $0 }
       END { if (skipped != "") print skipped
             else if (size == "") print "no table: see tests.log"
             else printf "%s: all_reduce %s %s us (algbw %s GB/s); copy %s us\n", who, size, t, algbw, copy }' "$1"
}
MIN_S=20 step "tests test_distributed" 90 "$BUILD_DIR/tests/test_distributed"
[ "$(last_status)" = skipped ] || key "$(gtest_counts "$LAST_OUT")"
MIN_S=20 step "collectives bench $DEV" 60 "$BUILD_DIR/bench/bench_collectives" --device "$DEV" $QUICK
[ "$(last_status)" = pass ] && key "$(collectives_key "$LAST_OUT")"

# --- 3. what a new user with a GPU runs first ----------------------------------------------------
log first-run.log
step "moco demo" 60 "$MOCO" demo --device "$DEV"
[ "$(last_status)" = pass ] && key "$(grep '^demo:' "$LAST_OUT" | tail -1 | sed 's/^demo: //' | cut -c1-100)"

# The quickstart's plain MoCo v2 pretraining (scripts/quickstart.sh: its dataset and flags), on
# $DEV; bounded by --max-steps to fit the time box (the quickstart runs 18 epochs, ~560 steps).
first_pretrain() {
  local data=$WORK/qs-synth steps per_class
  if [ "$REHEARSE" = 1 ]; then per_class=40 steps=6; else per_class=400 steps=${GPU_CHECK_PRETRAIN_STEPS:-200}; fi
  "$BUILD_DIR/tools/moco" synth "$data" --classes 5 --train-per-class $per_class --val-per-class 60 \
    --size 40 --clutter 0 --plain-background --force || return 1
  "$BUILD_DIR/tools/moco" pretrain "$data" --save-dir "$WORK/qs-mocov2" -a resnet18 --small-stem --width 8 \
    --image-size 32 -b 64 --bn-groups 4 --moco-k 256 --moco-m 0.99 --moco-dim 64 --lr 0.06 --mlp --aug-plus \
    --cos --moco-t 0.2 --blur-sigma 0.02,0.3 --epochs 18 --knn-every 6 -j "$(nproc)" --device "$DEV" -p 10 \
    --max-steps "$steps"
}
export -f first_pretrain
MIN_S=30 step "quickstart pretrain" 150 first_pretrain
if [ "$(last_status)" != skipped ]; then
  ips=$(grep 'img/s' "$LAST_OUT" | tail -1 | awk '{ for (i = 2; i <= NF; i++) if ($i == "img/s") print $(i - 1) }')
  done_line=$(grep -m1 '^done:' "$LAST_OUT" | sed 's/^done: //; s/; last checkpoint.*//')
  knn=$(grep -o 'kNN top-1 [0-9.]*%' "$LAST_OUT" | tail -1)
  key "${done_line:-no done line}; ${ips:-?} img/s${knn:+; $knn}"
fi

# --- 4. the whole MoCo step, next to its PyTorch twin ---------------------------------------------
# bench_moco_step: plain MoCo v2 and hp + 1 hard negative; ResNet-50, 224 px, batch 128 in 4 groups
# (--quick: ResNet-18 small stem, 32 px, batch 32). The twin times the reference's step with 4
# BatchNorm groups, then with 1.
twin() {  # twin NAME CAP SCRIPT ARGS...
  local name=$1 cap=$2
  shift 2
  if [ $HAVE_TORCH = 1 ]; then
    MIN_S=30 step "$name" "$cap" torch_run "$PYTHON" "$@"
  else
    skip "$name" "torch not importable here"
  fi
}
# SimCLR (fp32 only): the whole step (ResNet-50, 224 px, batch 128, global BatchNorm, LARS; plain
# and hp + 1 hard negative) and the NT-Xent op at 2B = 256 and 512, each next to its twin.
simclr_steps() {
  MIN_S=45 step "simclr step engine fp32" 150 "$BUILD_DIR/bench/bench_simclr_step" --device "$DEV" --precision fp32 $QUICK
  local simclr_ms
  simclr_ms=$(field_before "$LAST_OUT" 'plain SimCLR' ms/step)
  [ -n "$simclr_ms" ] && key "plain $simclr_ms ms/step; hp+1 neg $(field_before "$LAST_OUT" 'hp + 1 hard neg' ms/step) ms/step"
  twin "simclr step PyTorch fp32" 120 bench/torch_ref/bench_simclr_step.py --device "$DEV" --precision fp32 $QUICK
  if [ "$(last_status)" = pass ]; then
    local torch_ms
    torch_ms=$(field_before "$LAST_OUT" 'plain SimCLR' ms/step)
    key "plain ${torch_ms:-?} ms/step; engine/PyTorch time $(ratio "$simclr_ms" "$torch_ms")"
  fi
  MIN_S=20 step "nt_xent engine fp32" 60 "$BUILD_DIR/bench/bench_nt_xent" --device "$DEV" --precision fp32 $QUICK
  twin "nt_xent PyTorch fp32" 60 bench/torch_ref/bench_nt_xent.py --device "$DEV" --precision fp32 $QUICK
}
log moco-step.log
for precision in fp32 bf16 tf32; do
  # bf16 (mixed precision; the goal: >= 1.5x PyTorch's autocast bf16 with channels_last) and tf32 if
  # time allows: only when what is left also covers steps 5 and 6 (GPU_CHECK_TF32_LEFT s)
  if [ $precision != fp32 ] && (($(left) < ${GPU_CHECK_TF32_LEFT:-330} * CAP_SCALE)); then
    skip "moco step $precision" "skipped: $(left) s left, kept for the ResNet ops and the sanitizer"
    break
  fi
  # bf16 at the goal's batch of 256 (>= 4,500 img/s, peak memory <= 0.7x PyTorch's), both sides
  batch=()
  [ $precision = bf16 ] && [ -z "$QUICK" ] && batch=(--batch 256)
  MIN_S=45 step "moco step engine $precision" 180 "$BUILD_DIR/bench/bench_moco_step" --device "$DEV" --precision $precision $QUICK ${batch[@]+"${batch[@]}"}
  engine_out=$LAST_OUT engine_status=$(last_status)
  plain_ms=$(field_before "$engine_out" 'plain MoCo v2' ms/step)
  hp_ms=$(field_before "$engine_out" 'hp + 1 hard neg' ms/step)
  if [ -n "$plain_ms" ]; then
    key "plain $plain_ms ms/step $(field_before "$engine_out" 'plain MoCo v2' img/s) img/s$(grep 'plain MoCo v2' "$engine_out" | grep -o ' peak [0-9]* MiB' | head -1)$(grep 'plain MoCo v2' "$engine_out" | grep -o ' cuda graph' | head -1); hp+1 neg ${hp_ms:-?} ms/step"
  elif [ "$engine_status" = pass ]; then
    key "no step time: $(grep -v '^\s*$' "$engine_out" | tail -1 | cut -c1-80) (see moco-step.log)"
  fi
  twin "moco step PyTorch $precision" 150 bench/torch_ref/bench_moco_step.py --device "$DEV" --precision $precision $QUICK ${batch[@]+"${batch[@]}"}
  if [ "$(last_status)" = pass ]; then
    torch4=$(field_before "$LAST_OUT" '(4 groups)' ms/step)
    torch1=$(field_before "$LAST_OUT" '(1 groups)' ms/step)
    r=$(ratio "$plain_ms" "$torch4")
    if [ -n "$r" ]; then
      key "4 groups $torch4 ms/step$(grep '(4 groups)' "$LAST_OUT" | grep -o ' peak [0-9]* MiB' | head -1), 1 group ${torch1:-?}; engine/PyTorch time $r (plain vs 4 groups)"
    else
      key "${torch4:+4 groups $torch4 ms/step; }no ratio: see moco-step.log"
    fi
  fi
  [ $precision = fp32 ] && simclr_steps
done

# --- 5. the ResNet ops ---------------------------------------------------------------------------
resnet_key() {  # the f32 NCHW conv forward peak and BatchNorm's share of the copy bandwidth
  awk '
    /^copy \(clone\)/ { for (i = 1; i <= NF; i++) if ($i == "GB/s") copy = $(i - 1) }
    /^conv2d fwd / && !/fwd\+bwd/ && /f32 NCHW/ { for (i = 1; i <= NF; i++) if ($i == "TFLOP/s" && $(i - 1) > conv) conv = $(i - 1) }
    /^batchnorm2d fwd train f32 NCHW/ { for (i = 1; i <= NF; i++) if ($i == "GB/s") { bn = $(i - 1); share = $(i + 1) } }
    END { if (conv == "") print "no table: see resnet-ops.log"
          else printf "conv fwd f32 NCHW up to %s TFLOP/s; BN fwd %s GB/s = %s of copy %s GB/s\n", conv, bn, share, copy }' "$1"
}
log resnet-ops.log
MIN_S=30 step "resnet ops engine fp32" 120 "$BUILD_DIR/bench/bench_resnet_ops" --device "$DEV" --precision fp32 $QUICK
[ "$(last_status)" = pass ] && key "$(resnet_key "$LAST_OUT")"
twin "resnet ops PyTorch fp32" 120 bench/torch_ref/bench_resnet_ops.py --device "$DEV" --precision fp32 $QUICK
[ "$(last_status)" = pass ] && key "$(resnet_key "$LAST_OUT")"

# --- 6. compute-sanitizer over our kernels' CUDA tests ------------------------------------------
# Without the real-size cases (too slow under the sanitizer) and the deliberate out-of-memory.
SANITIZER_FILTER='--gtest_filter=*Cuda*:*CUDA*-*CudaRealSize*:CudaAllocator.OutOfMemoryNamesTheSize'
log sanitizer.log
for suite in test_ops test_engine; do
  if [ $REHEARSE = 1 ]; then  # the same filter, without the sanitizer (a GPU tool)
    MIN_S=20 step "sanitizer $suite" 150 "$BUILD_DIR/tests/$suite" "$SANITIZER_FILTER"
    [ "$(last_status)" = skipped ] || key "rehearsal: no compute-sanitizer, the filter ran plain: $(gtest_counts "$LAST_OUT")"
  elif ! command -v compute-sanitizer >/dev/null; then
    skip "sanitizer $suite" "no compute-sanitizer on PATH"
  else
    MIN_S=45 step "sanitizer memcheck $suite" 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$BUILD_DIR/tests/$suite" "$SANITIZER_FILTER"
    [ "$(last_status)" = skipped ] ||
      key "$(grep -m1 'ERROR SUMMARY' "$LAST_OUT" | sed 's/^=* *//'); $(gtest_counts "$LAST_OUT")"
  fi
done

# --- 7. deployment: moco embed next to PyTorch inference -----------------------------------------
# bench/embed/embed_vs_torch.sh: img/s of `moco embed` and of its twin over the same JPEGs, decode
# included on both sides (the rehearsal: 16 images, batch 8, 2 workers, one round). Last, so that
# it never takes the sanitizer's time; its log goes with the ResNet ops' ($OUT may return 8 files).
embed_pair() {
  local sizes=(--images 2048 --batch 256 --workers 8 --repeats 2)
  [ "$REHEARSE" = 1 ] && sizes=(--images 16 --batch 8 --workers 2 --repeats 1)
  MOCO=$BUILD_DIR/tools/moco bash bench/embed/embed_vs_torch.sh --device "$DEV" --precision fp32 "${sizes[@]}" \
    --work "$WORK/embed"
}
export -f embed_pair
log resnet-ops.log
if [ $HAVE_TORCH = 0 ]; then
  skip "embed vs PyTorch fp32" "torch not importable here"
elif [ ! -x "$MOCO" ]; then
  skip "embed vs PyTorch fp32" "not built: $MOCO"
else
  MIN_S=45 step "embed vs PyTorch fp32" 120 embed_pair
  if [ "$(last_status)" = pass ]; then
    # the table's row: device precision batch workers images threads commit engine torch ratio
    key "$(awk '$1 == ENVIRON["DEV"] && NF == 10 { printf "engine %s img/s, PyTorch %s img/s: engine/PyTorch %s (%s images, batch %s, %s workers)\n", $8, $9, $10, $5, $3, $4 }' "$LAST_OUT" | tail -1)"
  fi
fi

finish
