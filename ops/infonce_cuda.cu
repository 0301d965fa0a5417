// infonce_cuda.cu - the fused loss on CUDA, f32. Launches, in stream order:
//   forward:  cuBLAS queue_dots = q queue;  infonce_rows_kernel (one block per row);
//             cuda::row_loss_mean_kernel (one block: the mean loss and the two counts)
//   backward: infonce_probabilities_kernel (queue_dots -> g p in place);  cuBLAS dq = (g p) queue^T;
//             infonce_key_axpy_kernel (dq += g (p_0 - 1) k + g alpha p_h t_h)
// The row kernel reads its row of K dot products once (the online softmax of online_softmax.cuh).
// All of it in f32; expf/logf are the accurate functions, not the intrinsics.
#include <cmath>
#include <cstdint>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "ops/infonce.h"
#include "ops/matmul.h"
#include "ops/online_softmax.cuh"

namespace engine {

namespace {

using cuda::MaxSum;
using cuda::add_logit;
using cuda::block_combine;

constexpr int kRowThreads = 1024;  // MoCo has 128 rows of 65536 on ~130 SMs: one full block per SM
constexpr int kRowWarps = kRowThreads / cuda::kWarpSize;

// One block per row i: the key dot products, then one pass over the row's K queue dot products.
__global__ void __launch_bounds__(kRowThreads)
    infonce_rows_kernel(float* row_loss, int* row_rank, float* lse, float* key_dots, const float* queue_dots,
                        const float* q, const float* k, const float* hard, int64_t D, int64_t K, int64_t n_h,
                        float alpha, float temperature, bool vector_loads) {
  __shared__ float sum_scratch[kRowWarps];
  __shared__ int count_scratch[kRowWarps];
  __shared__ MaxSum pair_scratch[kRowWarps];
  __shared__ float positive;
  const int64_t i = blockIdx.x, width = 1 + n_h;
  const float* qi = q + i * D;
  for (int64_t c = 0; c < width; ++c) {
    const float* other = c == 0 ? k + i * D : hard + (i * n_h + c - 1) * D;
    float partial = 0.0f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) partial += qi[d] * other[d];
    const float total = cuda::block_sum(partial, sum_scratch);
    if (threadIdx.x == 0) {
      key_dots[i * width + c] = total;
      if (c == 0) positive = total;
    }
  }
  __syncthreads();
  const float s0 = positive;

  MaxSum acc{-INFINITY, 0.0f};
  int above = 0;
  auto consume = [&](float s) {
    acc = add_logit(acc, s / temperature);
    above += s > s0;
  };
  if (threadIdx.x == 0) {
    acc = add_logit(acc, s0 / temperature);
    for (int64_t h = 0; h < n_h; ++h) consume(alpha * key_dots[i * width + 1 + h]);
  }
  const float* row = queue_dots + i * K;
  int64_t scalar_from = 0;
  if (vector_loads) {  // every row starts 16-byte aligned: read four values a load
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int64_t j = threadIdx.x; j < K / 4; j += blockDim.x) {
      const float4 v = row4[j];
      consume(v.x);
      consume(v.y);
      consume(v.z);
      consume(v.w);
    }
    scalar_from = K;
  }
  for (int64_t j = scalar_from + threadIdx.x; j < K; j += blockDim.x) consume(row[j]);

  const MaxSum total = block_combine(acc, pair_scratch);
  const int rank = cuda::block_sum(above, count_scratch);
  if (threadIdx.x == 0) {
    const float row_lse = total.m + logf(total.s);
    lse[i] = row_lse;
    row_loss[i] = row_lse - s0 / temperature;
    row_rank[i] = rank;
  }
}

// g = dloss / (T N), read from the device so the backward never waits for the host.
__device__ inline float gradient_scale(const float* dloss, float temperature, int64_t N) {
  return *dloss / (temperature * static_cast<float>(N));
}

__global__ void infonce_probabilities_kernel(float* queue_dots, const float* dloss, const float* lse, int64_t N,
                                             int64_t K, float temperature) {
  const float g = gradient_scale(dloss, temperature, N);
  ENGINE_GRID_STRIDE_LOOP(idx, N * K) queue_dots[idx] = g * expf(queue_dots[idx] / temperature - lse[idx / K]);
}

__global__ void infonce_key_axpy_kernel(float* dq, const float* dloss, const float* lse, const float* key_dots,
                                        const float* k, const float* hard, int64_t N, int64_t D, int64_t n_h,
                                        float alpha, float temperature) {
  const float g = gradient_scale(dloss, temperature, N);
  const int64_t width = 1 + n_h;
  ENGINE_GRID_STRIDE_LOOP(idx, N * D) {
    const int64_t i = idx / D, d = idx % D;
    const float* kd = key_dots + i * width;
    float acc = (expf(kd[0] / temperature - lse[i]) - 1.0f) * k[idx];
    for (int64_t h = 0; h < n_h; ++h)
      acc += alpha * expf(alpha * kd[1 + h] / temperature - lse[i]) * hard[(i * n_h + h) * D + d];
    dq[idx] += g * acc;
  }
}

}  // namespace

void infonce_forward_cuda(int device, float* loss, int64_t* correct, float* lse, float* key_dots, float* queue_dots,
                          const float* q, const float* k, const float* queue, const float* hard, int64_t N, int64_t D,
                          int64_t K, int64_t n_h, double alpha, double temperature) {
  cudaStream_t stream = cuda::stream(device);
  matmul_forward_cuda<float>(device, queue_dots, q, queue, N, K, D, false, false, D, K, K);
  CudaScratch<float> row_loss(device, static_cast<size_t>(N));
  CudaScratch<int> row_rank(device, static_cast<size_t>(N));
  const bool vector_loads = K % 4 == 0 && reinterpret_cast<uintptr_t>(queue_dots) % sizeof(float4) == 0;
  cuda::launch("infonce_rows_kernel", infonce_rows_kernel, static_cast<unsigned>(N), kRowThreads, 0, stream,
      row_loss.ptr, row_rank.ptr, lse, key_dots, queue_dots, q, k, hard, D, K, n_h, static_cast<float>(alpha),
      static_cast<float>(temperature), vector_loads);
  cuda::launch("row_loss_mean_kernel", cuda::row_loss_mean_kernel, 1, cuda::kBlock, 0, stream, loss, correct, row_loss.ptr,
      row_rank.ptr, N);
}

void infonce_backward_cuda(int device, float* dq, float* queue_dots, const float* dloss, const float* lse,
                           const float* key_dots, const float* k, const float* queue, const float* hard, int64_t N,
                           int64_t D, int64_t K, int64_t n_h, double alpha, double temperature) {
  cudaStream_t stream = cuda::stream(device);
  const float t = static_cast<float>(temperature);
  cuda::launch("infonce_probabilities_kernel", infonce_probabilities_kernel,
      cuda::elementwise_grid(N * K, cuda::kBlock), cuda::kBlock, 0, stream, queue_dots, dloss, lse, N, K, t);
  matmul_forward_cuda<float>(device, dq, queue_dots, queue, N, D, K, false, true, K, K, D);
  cuda::launch("infonce_key_axpy_kernel", infonce_key_axpy_kernel, cuda::elementwise_grid(N * D, cuda::kBlock),
      cuda::kBlock, 0, stream, dq, dloss, lse, key_dots, k, hard, N, D, n_h, static_cast<float>(alpha), t);
}

}  // namespace engine
