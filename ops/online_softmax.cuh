// online_softmax.cuh - the log-sum-exp of a row read once, and the mean over the rows' losses, for the
// contrastive losses' kernels (infonce_cuda.cu, nt_xent_cuda.cu).
//
// Each thread keeps a running maximum m of the logits it has seen and the sum s = sum exp(z - m),
// rescaled when the maximum moves (the "online softmax"); the block then combines the threads'
// pairs in a tree. lse = m + log(s). The empty state is m = -inf, s = 0. All of it in f32 with the
// accurate expf, not the intrinsic.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "engine/cuda_common.cuh"

namespace engine::cuda {

struct MaxSum {
  float m, s;
};

__device__ inline MaxSum add_logit(MaxSum a, float z) {
  if (z > a.m) return {z, a.s * expf(a.m - z) + 1.0f};  // expf(-inf) = 0 covers the empty state
  return {a.m, a.s + expf(z - a.m)};
}

__device__ inline MaxSum combine(MaxSum a, MaxSum b) {
  if (b.s == 0.0f) return a;  // an empty side (m = -inf) would make -inf - -inf = NaN below
  if (a.s == 0.0f) return b;
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// The block's combined pair, valid in thread 0. `scratch` holds blockDim.x / 32 pairs.
__device__ inline MaxSum block_combine(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v = combine(v, {__shfl_down_sync(0xffffffffu, v.m, offset), __shfl_down_sync(0xffffffffu, v.s, offset)});
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / kWarpSize) ? scratch[lane] : MaxSum{-INFINITY, 0.0f};
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
      v = combine(v, {__shfl_down_sync(0xffffffffu, v.m, offset), __shfl_down_sync(0xffffffffu, v.s, offset)});
  }
  return v;
}

// One block: *loss = the mean of the rows' losses (summed in double), correct = the rows whose rank
// is below 1 and below 5 (top-1, top-5).
static __global__ void row_loss_mean_kernel(float* loss, int64_t* correct, const float* row_loss, const int* row_rank,
                                            int64_t rows) {
  __shared__ double sum_scratch[kBlock / kWarpSize];
  __shared__ int count_scratch[kBlock / kWarpSize];
  double sum = 0.0;
  int top1 = 0, top5 = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    sum += static_cast<double>(row_loss[r]);
    top1 += row_rank[r] < 1;
    top5 += row_rank[r] < 5;
  }
  sum = block_sum(sum, sum_scratch);
  top1 = block_sum(top1, count_scratch);
  top5 = block_sum(top5, count_scratch);
  if (threadIdx.x == 0) {
    *loss = static_cast<float>(sum / static_cast<double>(rows));
    correct[0] = top1;
    correct[1] = top5;
  }
}

}  // namespace engine::cuda
