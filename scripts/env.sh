# Sourced by the other scripts: puts the CUDA toolkit's nvcc on PATH when it is installed in the
# usual place but not on PATH, so CMake compiles the CUDA backend.
if ! command -v nvcc >/dev/null 2>&1; then
  for candidate in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [ -x "$candidate/nvcc" ]; then
      export PATH="$candidate:$PATH"
      break
    fi
  done
fi
