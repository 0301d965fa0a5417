// reduce_dim_cuda.cu - sum and mean over a dim, accumulating in double as the CPU reference does
// (the reductions are bound by memory, so the wider adds cost nothing visible).
//
// Two forward kernels for the two layouts that matter:
//   I == 1 (reducing the innermost dim, rows are contiguous): one block per row, each thread
//   strides over the row, then a block reduction;
//   I > 1: one thread per output (o, i), looping over d; neighbouring threads read neighbouring
//   addresses, so the loads coalesce.
#include "engine/cuda_common.cuh"
#include "ops/reduce_dim.h"

namespace engine {

namespace {

template <typename T>
__global__ void reduce_rows_kernel(T* out, const T* x, int64_t D, double scale) {
  __shared__ double scratch[cuda::kBlock / cuda::kWarpSize];
  const T* row = x + static_cast<int64_t>(blockIdx.x) * D;
  double acc = 0.0;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) acc += static_cast<double>(row[d]);
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(acc * scale);
}

template <typename T>
__global__ void reduce_columns_kernel(T* out, const T* x, int64_t O, int64_t D, int64_t I, double scale) {
  ENGINE_GRID_STRIDE_LOOP(idx, O * I) {
    const int64_t o = idx / I, i = idx % I;
    const T* column = x + o * D * I + i;
    double acc = 0.0;
    for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(column[d * I]);
    out[idx] = static_cast<T>(acc * scale);
  }
}

template <typename T>
__global__ void reduce_dim_backward_kernel(T* dx, const T* dout, int64_t D, int64_t I, int64_t n, T scale) {
  ENGINE_GRID_STRIDE_LOOP(idx, n) {
    const int64_t i = idx % I, o = idx / (D * I);
    dx[idx] = dout[o * I + i] * scale;
  }
}

template <typename T>
T reduce_scale(ReduceOp op, int64_t D) {
  return op == ReduceOp::Mean ? T(1) / static_cast<T>(D) : T(1);
}

}  // namespace

template <typename T>
void reduce_dim_forward_cuda(int device, ReduceOp op, T* out, const T* x, int64_t O, int64_t D, int64_t I) {
  if (O * I == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const double scale = reduce_scale<double>(op, D);
  if (I == 1 && O <= 0x7fffffff) {
    cuda::launch("reduce_rows_kernel", reduce_rows_kernel<T>, static_cast<unsigned>(O), cuda::kBlock, 0, stream, out, x,
        D, scale);
  } else {
    cuda::launch("reduce_columns_kernel", reduce_columns_kernel<T>, cuda::elementwise_grid(O * I, cuda::kBlock),
        cuda::kBlock, 0, stream, out, x, O, D, I, scale);
  }
}

template <typename T>
void reduce_dim_backward_cuda(int device, ReduceOp op, T* dx, const T* dout, int64_t O, int64_t D, int64_t I) {
  const int64_t n = O * D * I;
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("reduce_dim_backward_kernel", reduce_dim_backward_kernel<T>, cuda::elementwise_grid(n, cuda::kBlock),
      cuda::kBlock, 0, stream, dx, dout, D, I, n, reduce_scale<T>(op, D));
}

template void reduce_dim_forward_cuda<float>(int, ReduceOp, float*, const float*, int64_t, int64_t, int64_t);
template void reduce_dim_forward_cuda<double>(int, ReduceOp, double*, const double*, int64_t, int64_t, int64_t);
template void reduce_dim_backward_cuda<float>(int, ReduceOp, float*, const float*, int64_t, int64_t, int64_t);
template void reduce_dim_backward_cuda<double>(int, ReduceOp, double*, const double*, int64_t, int64_t, int64_t);

}  // namespace engine
