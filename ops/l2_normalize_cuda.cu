// l2_normalize_cuda.cu - one warp per row: MoCo's rows are short (D = 128, four values a lane), so
// a warp shuffle reduction suffices and a block serves kRowsPerBlock rows. Sums accumulate in
// double, as on the CPU; only their order differs.
#include "engine/cuda_common.cuh"
#include "ops/l2_normalize.h"

namespace engine {

namespace {

constexpr int kRowsPerBlock = cuda::kBlock / cuda::kWarpSize;

// Sum over the warp, valid in every lane (butterfly exchange).
__device__ inline double warp_all_sum(double v) {
  for (int offset = cuda::kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__global__ void l2_normalize_forward_kernel(T* y, T* norm, const T* x, int64_t rows, int64_t dim, double eps) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize;
  if (r >= rows) return;  // the whole warp leaves together, so the shuffles below stay full-warp
  const int lane = threadIdx.x % cuda::kWarpSize;
  const T* xr = x + r * dim;
  double sum_sq = 0.0;
  for (int64_t d = lane; d < dim; d += cuda::kWarpSize) {
    const double v = static_cast<double>(xr[d]);
    sum_sq += v * v;
  }
  const double n = ::sqrt(warp_all_sum(sum_sq));
  if (lane == 0) norm[r] = static_cast<T>(n);
  const T denom = static_cast<T>(n < eps ? eps : n);  // std::max(n, eps): a NaN norm stays NaN, as on the CPU
  T* yr = y + r * dim;
  for (int64_t d = lane; d < dim; d += cuda::kWarpSize) yr[d] = xr[d] / denom;
}

template <typename T>
__global__ void l2_normalize_backward_kernel(T* dx, const T* dy, const T* y, const T* norm, int64_t rows, int64_t dim,
                                             double eps) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / cuda::kWarpSize;
  if (r >= rows) return;
  const int lane = threadIdx.x % cuda::kWarpSize;
  const T* yr = y + r * dim;
  const T* dyr = dy + r * dim;
  T* dxr = dx + r * dim;
  if (static_cast<double>(norm[r]) <= eps) {
    const T clamp = static_cast<T>(eps);
    for (int64_t d = lane; d < dim; d += cuda::kWarpSize) dxr[d] = dyr[d] / clamp;
    return;
  }
  double dot = 0.0;
  for (int64_t d = lane; d < dim; d += cuda::kWarpSize) dot += static_cast<double>(yr[d]) * static_cast<double>(dyr[d]);
  const T y_dot_dy = static_cast<T>(warp_all_sum(dot)), n = norm[r];
  for (int64_t d = lane; d < dim; d += cuda::kWarpSize) dxr[d] = (dyr[d] - yr[d] * y_dot_dy) / n;
}

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

template <typename T>
void l2_normalize_forward_cuda(int device, T* y, T* norm, const T* x, int64_t rows, int64_t dim, double eps) {
  if (rows == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("l2_normalize_forward_kernel", l2_normalize_forward_kernel<T>, row_blocks(rows), cuda::kBlock, 0, stream,
      y, norm, x, rows, dim, eps);
}

template <typename T>
void l2_normalize_backward_cuda(int device, T* dx, const T* dy, const T* y, const T* norm, int64_t rows, int64_t dim,
                                double eps) {
  if (rows == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("l2_normalize_backward_kernel", l2_normalize_backward_kernel<T>, row_blocks(rows), cuda::kBlock, 0,
      stream, dx, dy, y, norm, rows, dim, eps);
}

template void l2_normalize_forward_cuda<float>(int, float*, float*, const float*, int64_t, int64_t, double);
template void l2_normalize_forward_cuda<double>(int, double*, double*, const double*, int64_t, int64_t, double);
template void l2_normalize_backward_cuda<float>(int, float*, const float*, const float*, const float*, int64_t,
                                                int64_t, double);
template void l2_normalize_backward_cuda<double>(int, double*, const double*, const double*, const double*, int64_t,
                                                 int64_t, double);

}  // namespace engine
