// index_select_cuda.cu - index_select on CUDA. Both kernels walk a 2-D grid: blockIdx.y strides
// over rows (so a row's index or source list is read once per block, without dividing element
// offsets by the row size), x-threads over the elements of the row.
#include <algorithm>
#include <type_traits>

#include "engine/cuda_common.cuh"
#include "ops/index_select.h"

namespace engine {

namespace {

template <typename T>
using Accumulator = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void index_select_forward_kernel(T* out, const T* x, const int64_t* index, int64_t rows_out,
                                            int64_t row_size) {
  for (int64_t i = blockIdx.y; i < rows_out; i += gridDim.y) {
    const T* src = x + index[i] * row_size;
    T* dst = out + i * row_size;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < row_size;
         j += static_cast<int64_t>(blockDim.x) * gridDim.x)
      dst[j] = src[j];
  }
}

// dx[r, j] = the sum, in the order of sources, of dout[i, j] over the i that picked row r.
template <typename T>
__global__ void index_select_backward_kernel(T* dx, const T* dout, const int64_t* row_starts, const int64_t* sources,
                                             int64_t rows_in, int64_t row_size) {
  using Acc = Accumulator<T>;
  for (int64_t r = blockIdx.y; r < rows_in; r += gridDim.y) {
    const int64_t begin = row_starts[r], end = row_starts[r + 1];
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < row_size;
         j += static_cast<int64_t>(blockDim.x) * gridDim.x) {
      Acc sum = 0;
      for (int64_t k = begin; k < end; ++k) sum += convert_element<Acc>(dout[sources[k] * row_size + j]);
      dx[r * row_size + j] = convert_element<T>(sum);
    }
  }
}

// Blocks along a row to cover it (at most 1024; longer rows loop), rows across y (the hardware
// limit is 65535; more rows loop).
dim3 row_grid(int64_t rows, int64_t row_size) {
  const int64_t x = std::clamp<int64_t>((row_size + cuda::kBlock - 1) / cuda::kBlock, 1, 1024);
  const int64_t y = std::clamp<int64_t>(rows, 1, 65535);
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

}  // namespace

template <typename T>
void index_select_forward_cuda(int device, T* out, const T* x, const int64_t* index, int64_t rows_out,
                               int64_t row_size) {
  if (rows_out == 0 || row_size == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("index_select_forward_kernel", index_select_forward_kernel<T>, row_grid(rows_out, row_size),
      cuda::kBlock, 0, stream, out, x, index, rows_out, row_size);
}

template <typename T>
void index_select_backward_cuda(int device, T* dx, const T* dout, const int64_t* row_starts, const int64_t* sources,
                                int64_t rows_in, int64_t row_size) {
  if (rows_in == 0 || row_size == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("index_select_backward_kernel", index_select_backward_kernel<T>, row_grid(rows_in, row_size),
      cuda::kBlock, 0, stream, dx, dout, row_starts, sources, rows_in, row_size);
}

template void index_select_forward_cuda<float>(int, float*, const float*, const int64_t*, int64_t, int64_t);
template void index_select_forward_cuda<double>(int, double*, const double*, const int64_t*, int64_t, int64_t);
template void index_select_forward_cuda<bf16>(int, bf16*, const bf16*, const int64_t*, int64_t, int64_t);
template void index_select_backward_cuda<float>(int, float*, const float*, const int64_t*, const int64_t*, int64_t,
                                                int64_t);
template void index_select_backward_cuda<double>(int, double*, const double*, const int64_t*, const int64_t*, int64_t,
                                                 int64_t);
template void index_select_backward_cuda<bf16>(int, bf16*, const bf16*, const int64_t*, const int64_t*, int64_t,
                                               int64_t);

}  // namespace engine
