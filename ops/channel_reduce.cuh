// channel_reduce.cuh - per-channel sums over (N, H*W) on CUDA, the reduction behind the conv bias
// gradient and batchnorm2d's statistics and backward.
//
// One block per channel; its threads stride over the channel's N*HW elements and a block
// reduction adds their partial sums, in double, as the CPU reference does. Why not float: the sum
// of dy that batchnorm2d's backward needs cancels (its terms are far larger than the sum), and in
// float it came out about 1% off on the quickstart's data, so emulated CUDA training left the CPU
// run by a factor of ten per step; in double it agrees to 5e-6. The kernel is memory-bound, so the
// double adds cost nothing a GPU would notice. In NHWC a channel's elements are C apart,
// so these loads do not coalesce: correct, not yet fast (a tiled NHWC kernel is future work).
#pragma once

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "ops/channel_layout.h"

namespace engine::cuda {

// What a per-channel term returns: M floats to be summed.
template <int M>
struct ChannelTerms {
  float v[M];
  __device__ float operator[](int m) const { return v[m]; }
};

// For each channel c and each of the M values term(c, offset) returns (as a float array):
// sums[m][c] = sum over the channel's elements. M is 1 or 2.
template <int M, typename Term>
__global__ void channel_sums_kernel(float* sums, ChannelLayout layout, Term term) {
  __shared__ double scratch[kBlock / kWarpSize];
  const int64_t c = blockIdx.x, per_channel = layout.N * layout.HW;
  double acc[M] = {};
  for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
    const int64_t n = j / layout.HW, i = j % layout.HW;
    const auto v = term(c, layout.offset(n, c, i));
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] += v[m];
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const double total = block_sum(acc[m], scratch);
    if (threadIdx.x == 0) sums[m * layout.C + c] = total;
  }
}

// The activation types the per-channel CUDA ops store: f32, or bf16 computed in f32.
template <typename Fn>
void dispatch_activation(DType dtype, const char* op, Fn&& fn) {
  ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16, "{} on CUDA takes f32 or bf16, found {}", op,
               dtype_name(dtype));
  if (dtype == DType::f32)
    fn.template operator()<float>();
  else
    fn.template operator()<bf16>();
}

template <typename T>
__device__ inline float load_float(const T* p, int64_t i) {
  return convert_element<float>(p[i]);
}

}  // namespace engine::cuda
