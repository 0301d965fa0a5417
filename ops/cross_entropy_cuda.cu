// cross_entropy_cuda.cu - the loss on CUDA. Launches, in stream order:
//   forward:  cross_entropy_rows_kernel (one block per row: max, sum of exponentials, lse, row loss,
//             and the label's rank when the accuracy counts are asked for);
//             cross_entropy_mean_kernel (one block: the mean of the row losses, and the counts)
//   backward: cross_entropy_backward_kernel (one thread per element)
// Sums are in double, each block's over fixed strided shares combined by a fixed shuffle tree, so
// the results repeat to the bit from run to run (see cross_entropy.h). The classifier's rows are
// short (C = 1000 for ImageNet), and a block per row keeps the whole row's work on one SM.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "ops/cross_entropy.h"

namespace engine {

namespace {

constexpr int kWarps = cuda::kBlock / cuda::kWarpSize;
constexpr int64_t kMaxRowBlocks = 65535;  // more rows than this: each block takes several in turn

__device__ inline bool label_in_range(int64_t label, int64_t C) { return label >= 0 && label < C; }

__device__ inline double warp_max(double v) {
  for (int offset = cuda::kWarpSize / 2; offset > 0; offset /= 2) v = fmax(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

// Maximum over the block, returned to every thread. The empty share of a thread past the row's
// end is -inf, which fmax ignores.
__device__ inline double block_max_all(double v, double* scratch, double* result) {
  const int lane = threadIdx.x % cuda::kWarpSize, warp = threadIdx.x / cuda::kWarpSize;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? scratch[lane] : -INFINITY;
    v = warp_max(v);
    if (lane == 0) *result = v;
  }
  __syncthreads();
  return *result;
}

// The label's rank in row z (cross_entropy.h): the classes scoring higher, or the same at a lower
// index, counted over the block; the largest count, ranked at neither k, for a label out of range or
// scoring NaN. The result is valid in thread 0; every thread of the block must call it.
template <typename T>
__device__ inline int64_t block_label_rank(const T* z, int64_t label, int64_t C, int64_t* scratch) {
  const bool ranked = label_in_range(label, C) && !isnan(static_cast<double>(z[label]));
  int64_t above = 0;
  if (ranked) {
    const T z_label = z[label];
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) above += z[j] > z_label || (z[j] == z_label && j < label);
  }
  above = cuda::block_sum(above, scratch);
  return ranked ? above : INT64_MAX;
}

// row_rank may be null (no accuracy counts asked for).
template <typename T>
__global__ void __launch_bounds__(cuda::kBlock)
    cross_entropy_rows_kernel(double* row_loss, int64_t* row_rank, T* lse, const T* logits, const int64_t* labels,
                              int64_t N, int64_t C) {
  __shared__ double scratch[kWarps];
  __shared__ int64_t count_scratch[kWarps];
  __shared__ double row_max;
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const T* z = logits + i * C;
    double local_max = -INFINITY;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) local_max = fmax(local_max, static_cast<double>(z[j]));
    const double z_max = block_max_all(local_max, scratch, &row_max);
    double local_sum = 0.0;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) local_sum += exp(static_cast<double>(z[j]) - z_max);
    const double sum_exp = cuda::block_sum(local_sum, scratch);
    if (threadIdx.x == 0) {
      const double row_lse = z_max + log(sum_exp);
      const int64_t label = labels[i];
      lse[i] = static_cast<T>(row_lse);
      row_loss[i] = label_in_range(label, C) ? row_lse - static_cast<double>(z[label]) : NAN;
    }
    if (row_rank != nullptr) {
      const int64_t rank = block_label_rank(z, labels[i], C, count_scratch);
      if (threadIdx.x == 0) row_rank[i] = rank;
    }
  }
}

// One block: loss = the mean of the N row losses; correct (when not null) = the rows ranked below 1
// and below 5.
template <typename T>
__global__ void __launch_bounds__(cuda::kBlock)
    cross_entropy_mean_kernel(T* loss, int64_t* correct, const double* row_loss, const int64_t* row_rank, int64_t N) {
  __shared__ double scratch[kWarps];
  __shared__ int64_t count_scratch[kWarps];
  double partial = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) partial += row_loss[i];
  const double total = cuda::block_sum(partial, scratch);
  if (threadIdx.x == 0) *loss = static_cast<T>(total / static_cast<double>(N));
  if (correct == nullptr) return;
  int64_t top1 = 0, top5 = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    top1 += row_rank[i] < 1;
    top5 += row_rank[i] < 5;
  }
  top1 = cuda::block_sum(top1, count_scratch);
  top5 = cuda::block_sum(top5, count_scratch);
  if (threadIdx.x == 0) {
    correct[0] = top1;
    correct[1] = top5;
  }
}

// g / N is read from the device, so the backward never waits for the host.
template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* dloss, const T* logits, const T* lse,
                                              const int64_t* labels, int64_t N, int64_t C) {
  const double g = static_cast<double>(*dloss) / static_cast<double>(N);
  ENGINE_GRID_STRIDE_LOOP(idx, N * C) {
    const int64_t i = idx / C, j = idx % C, label = labels[i];
    if (!label_in_range(label, C)) {
      dlogits[idx] = static_cast<T>(NAN);
      continue;
    }
    const double p = exp(static_cast<double>(logits[idx]) - static_cast<double>(lse[i]));
    dlogits[idx] = static_cast<T>(g * (p - (j == label ? 1.0 : 0.0)));
  }
}

}  // namespace

template <typename T>
void cross_entropy_forward_cuda(int device, T* loss, T* lse, const T* logits, const int64_t* labels, int64_t N,
                                int64_t C, int64_t* correct) {
  cudaStream_t stream = cuda::stream(device);
  CudaScratch<double> row_loss(device, static_cast<size_t>(N));
  CudaScratch<int64_t> row_rank(device, correct ? static_cast<size_t>(N) : 0);  // null without counts
  const auto row_blocks = static_cast<unsigned>(std::min(N, kMaxRowBlocks));
  cuda::launch("cross_entropy_rows_kernel", cross_entropy_rows_kernel<T>, row_blocks, cuda::kBlock, 0, stream,
      row_loss.ptr, row_rank.ptr, lse, logits, labels, N, C);
  cuda::launch("cross_entropy_mean_kernel", cross_entropy_mean_kernel<T>, 1, cuda::kBlock, 0, stream, loss, correct,
      row_loss.ptr, static_cast<const int64_t*>(row_rank.ptr), N);
}

template <typename T>
void cross_entropy_backward_cuda(int device, T* dlogits, const T* dloss, const T* logits, const T* lse,
                                 const int64_t* labels, int64_t N, int64_t C) {
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("cross_entropy_backward_kernel", cross_entropy_backward_kernel<T>,
      cuda::elementwise_grid(N * C, cuda::kBlock), cuda::kBlock, 0, stream, dlogits, dloss, logits, lse, labels, N, C);
}

template void cross_entropy_forward_cuda<float>(int, float*, float*, const float*, const int64_t*, int64_t, int64_t,
                                                int64_t*);
template void cross_entropy_forward_cuda<double>(int, double*, double*, const double*, const int64_t*, int64_t,
                                                 int64_t, int64_t*);
template void cross_entropy_backward_cuda<float>(int, float*, const float*, const float*, const float*,
                                                 const int64_t*, int64_t, int64_t);
template void cross_entropy_backward_cuda<double>(int, double*, const double*, const double*, const double*,
                                                  const int64_t*, int64_t, int64_t);

}  // namespace engine
