// cuda_common.cuh - small helpers every kernel file uses, and the one way kernels are launched.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "engine/cuda_check.h"
#include "engine/cuda_context.h"

namespace engine::cuda {

constexpr int kWarpSize = 32;
constexpr int kBlock = 256;  // default block for elementwise kernels

// A launch's name and the place in our sources that makes it, taken where the name is written:
// the file and line a failed launch reports.
struct LaunchSite {
  const char* name;
  const char* file;
  int line;
  LaunchSite(const char* name_, const char* file_ = __builtin_FILE(), int line_ = __builtin_LINE())
      : name(name_), file(file_), line(line_) {}
};

// Every kernel launch in the engine:
//     cuda::launch("name", kernel, grid, block, shared_bytes, stream, args...);
// is kernel<<<grid, block, shared_bytes, stream>>>(args...) followed by the launch check, so a bad
// configuration throws at once, naming the launch and its line. In the emulation build
// (-DENGINE_CUDA_EMULATION=ON) the same call runs the kernel on the CPU's SIMT emulator
// (engine/cuda_emulation/simt.h), which also reports faults it sees as it runs.
template <typename... Params, typename... Args>
void launch(LaunchSite site, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
#if ENGINE_CUDA_EMULATION
  // The emulator runs the kernel now, or records it while `stream` captures a graph
  // (cuda_emulation/device_memory.h); the site names the node in a fault at replay.
  const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  emulation::launch(site.name, site.file, site.line, stream, kernel, g, b, shared_bytes, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#endif
  ::engine::detail::check_launch(site.file, site.line, site.name);
}

// The launch's dynamic shared memory as an array `name` of T (CUDA's `extern __shared__ T name[]`).
#if ENGINE_CUDA_EMULATION
#define ENGINE_DYNAMIC_SHARED(T, name) \
  T* const name = static_cast<T*>(::engine::cuda::emulation::dynamic_shared_memory())
#else
#define ENGINE_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

// for (i = global thread index; i < n; i += total threads): covers any n with any grid.
#define ENGINE_GRID_STRIDE_LOOP(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);       \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block; the result is valid in thread 0. `scratch` holds blockDim.x / 32 values and
// may be reused by a later call: the final barrier keeps the next call's writes behind this one's
// reads.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + kWarpSize - 1) / kWarpSize;
  v = threadIdx.x < warps ? scratch[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();
  return v;
}

}  // namespace engine::cuda
