// nt_xent_cuda.cu - the fused NT-Xent loss on CUDA, f32. Launches, in stream order:
//   forward:  cuBLAS sim = z z^T;  nt_xent_rows_kernel (one block per row);
//             cuda::row_loss_mean_kernel (one block: the mean loss and the two counts)
//   backward: nt_xent_pair_weights_kernel (sim -> W = g (G + G^T) in place, 32 x 32 tile pairs);
//             cuBLAS dz = W z;  nt_xent_hard_axpy_kernel (dz += g alpha P_h t_h; only when n_h > 0)
// The row kernel reads its row of 2B dot products once (the online softmax of online_softmax.cuh).
// A row is short (512 values at 2B = 512: two per thread) and its reads coalesce, so the loads are
// plain floats; float4 loads would need the diagonal skipped inside a vector and gain nothing a
// 1 MiB matrix would show. All of it in f32; expf/logf are the accurate functions, not the
// intrinsics.
#include <cmath>
#include <cstdint>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "ops/matmul.h"
#include "ops/nt_xent.h"
#include "ops/online_softmax.cuh"

namespace engine {

namespace {

using cuda::add_logit;
using cuda::block_combine;
using cuda::MaxSum;

constexpr int kRowThreads = cuda::kBlock;  // SimCLR's 2B = 512 rows fill ~130 SMs with four blocks each
constexpr int kRowWarps = kRowThreads / cuda::kWarpSize;

// One block per row r: the hard dot products (a warp per hard negative), then one pass over the
// row's 2B - 1 similarities and the n_h hard logits.
__global__ void __launch_bounds__(kRowThreads)
    nt_xent_rows_kernel(float* row_loss, int* row_rank, float* lse, float* hard_dots, const float* sim,
                        const float* z, const float* hard, int64_t B, int64_t D, int64_t n_h, float alpha,
                        float temperature) {
  __shared__ int count_scratch[kRowWarps];
  __shared__ MaxSum pair_scratch[kRowWarps];
  const int64_t n = 2 * B, r = blockIdx.x, p = (r + B) % n, i = r % B;
  const int lane = threadIdx.x % cuda::kWarpSize, warp = threadIdx.x / cuda::kWarpSize;
  const float* zr = z + r * D;
  for (int64_t h = warp; h < n_h; h += kRowWarps) {
    const float* t = hard + (i * n_h + h) * D;
    float partial = 0.0f;
    for (int64_t d = lane; d < D; d += cuda::kWarpSize) partial += zr[d] * t[d];
    partial = cuda::warp_sum(partial);
    if (lane == 0) hard_dots[r * n_h + h] = partial;
  }
  __syncthreads();  // the hard dot products are read below by other warps than those that wrote them

  const float* row = sim + r * n;
  const float s_pos = row[p];
  MaxSum acc{-INFINITY, 0.0f};
  int above = 0;
  auto consume = [&](float s) {
    acc = add_logit(acc, s / temperature);
    above += s > s_pos;  // the positive itself (j = p) is not above itself
  };
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    if (j != r) consume(row[j]);
  for (int64_t h = threadIdx.x; h < n_h; h += blockDim.x) consume(alpha * hard_dots[r * n_h + h]);

  const MaxSum total = block_combine(acc, pair_scratch);
  const int rank = cuda::block_sum(above, count_scratch);
  if (threadIdx.x == 0) {
    const float row_lse = total.m + logf(total.s);
    lse[r] = row_lse;
    row_loss[r] = row_lse - s_pos / temperature;
    row_rank[r] = rank;
  }
}

constexpr int kTile = 32;     // a tile of the similarity matrix: one warp per tile row
constexpr int kTileRows = 8;  // warps per block; each handles kTile / kTileRows tile rows

// g G_rj of row r's logit j, from S_rj: g (P_rj - [j = p(r)]), and 0 on the diagonal.
__device__ inline float pair_term(float s, int64_t r, int64_t j, int64_t B, float g, float temperature,
                                  const float* lse) {
  if (r == j) return 0.0f;
  return g * (expf(s / temperature - lse[r]) - (j == (r + B) % (2 * B) ? 1.0f : 0.0f));
}

// sim -> W = g (G + G^T) in place. Block (x, y) handles tile (y, x) of the upper triangle of tiles
// together with its mirror tile (x, y): both are read (coalesced, a warp along a tile row) into
// shared memory before either is written, then W_rj = G_rj + G_jr goes to both places, the mirror
// read across the shared tile. Blocks below the diagonal of tiles have nothing to do: their tiles
// are their mirror's. The grid is tiles x tiles and gridDim.y stops at 65535, so 2B <= 65535 * 32:
// a matrix far larger (16 TiB in f32) than any GPU holds.
__global__ void nt_xent_pair_weights_kernel(float* sim, const float* dloss, const float* lse, int64_t B,
                                            float temperature) {
  const int64_t ti = blockIdx.y, tj = blockIdx.x;
  if (tj < ti) return;
  __shared__ float upper[kTile][kTile + 1], lower[kTile][kTile + 1];  // + 1: column reads hit distinct banks
  const int64_t n = 2 * B;
  const float g = *dloss / (temperature * static_cast<float>(n));
  const int tx = threadIdx.x;
  for (int a = threadIdx.y; a < kTile; a += kTileRows) {
    const int64_t r = ti * kTile + a, j = tj * kTile + tx;  // upper[a][tx] = g G_rj
    if (r < n && j < n) upper[a][tx] = pair_term(sim[r * n + j], r, j, B, g, temperature, lse);
    const int64_t r2 = tj * kTile + a, j2 = ti * kTile + tx;  // lower[a][tx] = g G_{r2, j2}
    if (r2 < n && j2 < n) lower[a][tx] = pair_term(sim[r2 * n + j2], r2, j2, B, g, temperature, lse);
  }
  __syncthreads();  // every read of the two tiles precedes every write
  for (int a = threadIdx.y; a < kTile; a += kTileRows) {
    const int64_t r = ti * kTile + a, j = tj * kTile + tx;
    if (r < n && j < n) sim[r * n + j] = upper[a][tx] + lower[tx][a];  // G_rj + G_jr
    const int64_t r2 = tj * kTile + a, j2 = ti * kTile + tx;
    if (ti != tj && r2 < n && j2 < n) sim[r2 * n + j2] = lower[a][tx] + upper[tx][a];
  }
}

// dz[r] += g alpha sum_h P_r,h t_{i(r),h}, with P_r,h = exp(alpha hard_dots[r, h] / T - lse_r).
__global__ void nt_xent_hard_axpy_kernel(float* dz, const float* dloss, const float* lse, const float* hard_dots,
                                         const float* hard, int64_t B, int64_t D, int64_t n_h, float alpha,
                                         float temperature) {
  const float g = *dloss / (temperature * static_cast<float>(2 * B));
  ENGINE_GRID_STRIDE_LOOP(idx, 2 * B * D) {
    const int64_t r = idx / D, d = idx % D, i = r % B;
    float acc = 0.0f;
    for (int64_t h = 0; h < n_h; ++h)
      acc += alpha * expf(alpha * hard_dots[r * n_h + h] / temperature - lse[r]) * hard[(i * n_h + h) * D + d];
    dz[idx] += g * acc;
  }
}

}  // namespace

void nt_xent_forward_cuda(int device, float* loss, int64_t* correct, float* lse, float* hard_dots, float* sim,
                          const float* z, const float* hard, int64_t B, int64_t D, int64_t n_h, double alpha,
                          double temperature) {
  cudaStream_t stream = cuda::stream(device);
  const int64_t n = 2 * B;
  matmul_forward_cuda<float>(device, sim, z, z, n, n, D, false, true, D, D, n);
  CudaScratch<float> row_loss(device, static_cast<size_t>(n));
  CudaScratch<int> row_rank(device, static_cast<size_t>(n));
  cuda::launch("nt_xent_rows_kernel", nt_xent_rows_kernel, static_cast<unsigned>(n), kRowThreads, 0, stream,
      row_loss.ptr, row_rank.ptr, lse, hard_dots, sim, z, hard, B, D, n_h, static_cast<float>(alpha),
      static_cast<float>(temperature));
  cuda::launch("row_loss_mean_kernel", cuda::row_loss_mean_kernel, 1, cuda::kBlock, 0, stream, loss, correct, row_loss.ptr,
      row_rank.ptr, n);
}

void nt_xent_backward_cuda(int device, float* dz, float* sim, const float* dloss, const float* lse,
                           const float* hard_dots, const float* z, const float* hard, int64_t B, int64_t D,
                           int64_t n_h, double alpha, double temperature) {
  cudaStream_t stream = cuda::stream(device);
  const int64_t n = 2 * B;
  const float t = static_cast<float>(temperature);
  const unsigned tiles = static_cast<unsigned>((n + kTile - 1) / kTile);
  cuda::launch("nt_xent_pair_weights_kernel", nt_xent_pair_weights_kernel, dim3(tiles, tiles),
      dim3(kTile, kTileRows), 0, stream, sim, dloss, lse, B, t);
  matmul_forward_cuda<float>(device, dz, sim, z, n, D, n, false, false, n, D, D);
  if (n_h > 0)
    cuda::launch("nt_xent_hard_axpy_kernel", nt_xent_hard_axpy_kernel, cuda::elementwise_grid(n * D, cuda::kBlock),
        cuda::kBlock, 0, stream, dz, dloss, lse, hard_dots, hard, B, D, n_h, static_cast<float>(alpha), t);
}

}  // namespace engine
