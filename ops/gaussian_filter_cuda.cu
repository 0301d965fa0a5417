// gaussian_filter_cuda.cu - the separable Gaussian blur as two kernels, one thread per output
// pixel: the horizontal pass into a scratch buffer, then the vertical pass into the output.
// Rounding as the CPU reference (see gaussian_filter.h).
#include <cstring>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "engine/rounding.h"
#include "ops/gaussian_filter.h"

namespace engine {

namespace {

// The taps by value: small enough for a kernel argument, and read from constant-bank memory.
struct Taps {
  float value[kMaxGaussianTaps];
  int k;
};

__device__ inline int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

// One 1-D pass over every plane: along W (a row's neighbours) when along_w, else along H.
__global__ void gaussian_pass_kernel(float* out, const float* in, int64_t total, int64_t H, int64_t W, bool along_w,
                                     Taps taps) {
  const int64_t pad = (taps.k - 1) / 2;
  ENGINE_GRID_STRIDE_LOOP(i, total) {
    const int64_t w = i % W, h = (i / W) % H;
    const float* plane = in + (i - h * W - w);
    float acc = 0.0f;
    for (int j = 0; j < taps.k; ++j) {
      const float v = along_w ? plane[h * W + reflect(w - pad + j, W)] : plane[reflect(h - pad + j, H) * W + w];
      acc = add_rn(acc, mul_rn(taps.value[j], v));
    }
    out[i] = acc;
  }
}

}  // namespace

void gaussian_blur_cuda(int device, float* out, const float* x, int64_t planes, int64_t H, int64_t W,
                        const float* taps, int k) {
  const int64_t total = planes * H * W;
  if (total == 0) return;
  Taps t{};
  std::memcpy(t.value, taps, static_cast<size_t>(k) * sizeof(float));
  t.k = k;
  cudaStream_t stream = cuda::stream(device);
  const int grid = cuda::elementwise_grid(total, cuda::kBlock);
  CudaScratch<float> rows(device, static_cast<size_t>(total));
  cuda::launch("gaussian_pass_kernel (horizontal)", gaussian_pass_kernel, grid, cuda::kBlock, 0, stream, rows.ptr, x,
      total, H, W, true, t);
  cuda::launch("gaussian_pass_kernel (vertical)", gaussian_pass_kernel, grid, cuda::kBlock, 0, stream, out, rows.ptr,
      total, H, W, false, t);
}

}  // namespace engine
