// cuda_common.cuh - small helpers every kernel file uses.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda_check.h"
#include "engine/cuda_context.h"

namespace engine::cuda {

constexpr int kWarpSize = 32;
constexpr int kBlock = 256;  // default block for elementwise kernels

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
