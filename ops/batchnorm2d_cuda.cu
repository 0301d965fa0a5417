// batchnorm2d_cuda.cu - batchnorm2d on CUDA, hand-written (see batchnorm2d.h for the math).
//
// Training forward, three launches:
//   1. channel_sums: sum x per channel                    -> mean
//   2. channel_sums: sum (x - mean)^2 per channel          -> var, invstd, running statistics
//      (two passes over x rather than one pass of sum and sum of squares: the latter cancels
//      catastrophically in f32 when |mean| >> std)
//   3. elementwise: y = x scale_c + shift_c
// Backward, two launches: channel_sums of dy and dy xhat, then the elementwise dx.
// Statistics are stored in f32 whatever the activation type; the per-channel sums accumulate in
// double (channel_reduce.cuh says why).
#include <cmath>

#include "ops/batchnorm2d.h"
#include "ops/channel_reduce.cuh"

namespace engine {

namespace {

template <typename T>
struct SumX {
  const T* x;
  __device__ cuda::ChannelTerms<1> operator()(int64_t, int64_t o) const { return {{cuda::load_float(x, o)}}; }
};

template <typename T>
struct SumSquaredDeviation {
  const T* x;
  const float* mean;
  __device__ cuda::ChannelTerms<1> operator()(int64_t c, int64_t o) const {
    const float d = cuda::load_float(x, o) - mean[c];
    return {{d * d}};
  }
};

template <typename T>
struct SumDyAndDyXhat {
  const T* dy;
  const T* x;
  const float* mean;
  const float* invstd;
  __device__ cuda::ChannelTerms<2> operator()(int64_t c, int64_t o) const {
    const float g = cuda::load_float(dy, o);
    return {{g, g * (cuda::load_float(x, o) - mean[c]) * invstd[c]}};
  }
};

// sums holds the per-channel sum of x; becomes the mean.
__global__ void finish_mean_kernel(float* mean, const float* sums, int64_t C, float inv_m) {
  ENGINE_GRID_STRIDE_LOOP(c, C) mean[c] = sums[c] * inv_m;
}

__global__ void finish_variance_kernel(float* invstd, float* running_mean, float* running_var, const float* mean,
                                       const float* sq_sums, int64_t C, double M, double momentum, double eps) {
  ENGINE_GRID_STRIDE_LOOP(c, C) {
    const double var = static_cast<double>(sq_sums[c]) / M;
    invstd[c] = static_cast<float>(1.0 / sqrt(var + eps));
    if (running_mean)
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean[c]);
    if (running_var)
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var * M / (M - 1.0));
  }
}

__global__ void invstd_from_running_var_kernel(float* invstd, const float* running_var, int64_t C, double eps) {
  ENGINE_GRID_STRIDE_LOOP(c, C) invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
}

template <typename T>
__global__ void normalize_kernel(T* y, const T* x, const float* gamma, const float* beta, const float* mean,
                                 const float* invstd, ChannelLayout layout) {
  ENGINE_GRID_STRIDE_LOOP(o, layout.numel()) {
    const int64_t c = layout.channel(o);
    const float scale = gamma[c] * invstd[c];
    y[o] = convert_element<T>((cuda::load_float(x, o) - mean[c]) * scale + beta[c]);
  }
}

// sums: [sum dy | sum dy xhat], each C long.
template <typename T>
__global__ void backward_dx_kernel(T* dx, const T* dy, const T* x, const float* gamma, const float* mean,
                                   const float* invstd, const float* sums, ChannelLayout layout, float inv_m,
                                   bool training) {
  ENGINE_GRID_STRIDE_LOOP(o, layout.numel()) {
    const int64_t c = layout.channel(o);
    const float k = gamma[c] * invstd[c], g = cuda::load_float(dy, o);
    if (training) {
      const float xhat = (cuda::load_float(x, o) - mean[c]) * invstd[c];
      dx[o] = convert_element<T>(k * (g - sums[c] * inv_m - xhat * sums[layout.C + c] * inv_m));
    } else {
      dx[o] = convert_element<T>(k * g);
    }
  }
}

__global__ void copy_channel_sums_kernel(float* dgamma, float* dbeta, const float* sums, int64_t C) {
  ENGINE_GRID_STRIDE_LOOP(c, C) {
    if (dbeta) dbeta[c] = sums[c];
    if (dgamma) dgamma[c] = sums[C + c];
  }
}

unsigned channel_blocks(const ChannelLayout& l) { return static_cast<unsigned>(l.C); }

}  // namespace

void batchnorm2d_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd, float* running_mean,
                                    float* running_var, const void* x, const float* gamma, const float* beta,
                                    DType dtype, ChannelLayout l, double momentum, double eps) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const int64_t M = l.N * l.HW;
  const int small_grid = cuda::elementwise_grid(l.C, cuda::kBlock);
  CudaScratch<float> sums(device, l.C);
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    const T* xt = static_cast<const T*>(x);
    cuda::launch("channel_sums_kernel (mean)", cuda::channel_sums_kernel<1, SumX<T>>, channel_blocks(l), cuda::kBlock,
        0, stream, sums.ptr, l, SumX<T>{xt});
    cuda::launch("finish_mean_kernel", finish_mean_kernel, small_grid, cuda::kBlock, 0, stream, save_mean, sums.ptr,
        l.C, 1.f / float(M));
    cuda::launch("channel_sums_kernel (variance)", cuda::channel_sums_kernel<1, SumSquaredDeviation<T>>,
        channel_blocks(l), cuda::kBlock, 0, stream, sums.ptr, l, SumSquaredDeviation<T>{xt, save_mean});
    cuda::launch("finish_variance_kernel", finish_variance_kernel, small_grid, cuda::kBlock, 0, stream, save_invstd,
        running_mean, running_var, save_mean, sums.ptr, l.C, double(M), momentum, eps);
    cuda::launch("normalize_kernel", normalize_kernel<T>, cuda::elementwise_grid(l.numel(), cuda::kBlock), cuda::kBlock,
        0, stream, static_cast<T*>(y), xt, gamma, beta, save_mean, save_invstd, l);
  });
}

void batchnorm2d_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const float* gamma,
                                   const float* beta, const float* running_mean, const float* running_var,
                                   DType dtype, ChannelLayout l, double eps) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("invstd_from_running_var_kernel", invstd_from_running_var_kernel,
      cuda::elementwise_grid(l.C, cuda::kBlock), cuda::kBlock, 0, stream, save_invstd, running_var, l.C, eps);
  if (l.numel() == 0) return;
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    cuda::launch("normalize_kernel", normalize_kernel<T>, cuda::elementwise_grid(l.numel(), cuda::kBlock), cuda::kBlock,
        0, stream, static_cast<T*>(y), static_cast<const T*>(x), gamma, beta, running_mean, save_invstd, l);
  });
}

void batchnorm2d_backward_cuda(int device, void* dx, float* dgamma, float* dbeta, const void* dy, const void* x,
                               const float* gamma, const float* mean, const float* invstd, DType dtype,
                               ChannelLayout l, bool training) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  CudaScratch<float> sums(device, 2 * l.C);
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    const T* dyt = static_cast<const T*>(dy);
    const T* xt = static_cast<const T*>(x);
    cuda::launch("channel_sums_kernel (backward)", cuda::channel_sums_kernel<2, SumDyAndDyXhat<T>>, channel_blocks(l),
        cuda::kBlock, 0, stream, sums.ptr, l, SumDyAndDyXhat<T>{dyt, xt, mean, invstd});
    cuda::launch("copy_channel_sums_kernel", copy_channel_sums_kernel, cuda::elementwise_grid(l.C, cuda::kBlock),
        cuda::kBlock, 0, stream, dgamma, dbeta, sums.ptr, l.C);
    if (dx && l.numel() > 0) {
      cuda::launch("backward_dx_kernel", backward_dx_kernel<T>, cuda::elementwise_grid(l.numel(), cuda::kBlock),
          cuda::kBlock, 0, stream, static_cast<T*>(dx), dyt, xt, gamma, mean, invstd, sums.ptr, l,
          1.f / float(l.N * l.HW), training);
    }
  });
}

}  // namespace engine
