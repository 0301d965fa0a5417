// batchnorm2d_cuda.cu - batchnorm2d on CUDA, hand-written (see batchnorm2d.h for the math), all
// ghost groups in one set of launches.
//
// Training forward, five launches:
//   1. partials of sum x per (group, channel)           (channel_reduce.cuh: a grid of row x split)
//   2. finish_mean: add each row's partials in order     -> mean (groups, C)
//   3. partials of sum (x - mean)^2 per (group, channel)
//      (two passes over x rather than one pass of sum and sum of squares: the latter cancels
//      catastrophically in f32 when |mean| >> std)
//   4. finish_variance, one thread per channel           -> invstd (groups, C); the running
//      statistics from the first group or the groups' average (one thread sees every group of its
//      channel, so the update needs no atomics)
//   5. elementwise: y = (x - mean) gamma invstd + beta
// Backward, three launches: partials of dy and dy xhat; finish_backward, one thread per channel,
// which keeps each group's mean(dy) and mean(dy xhat) for dx and sums dbeta and dgamma over the
// groups in group order; then the elementwise dx.
//
// The fused epilogues (batchnorm2d_relu, batchnorm2d_add_relu) are the same launches with a
// compile-time Fuse flag: normalize_kernel adds the residual and applies relu before its one
// store; the backward's partials and dx kernels read y beside dy and use dz = dy (y > 0) in
// place of dy, and the dx kernel writes d_residual = dz too. So dy, y and x are read once per
// pass and no dz tensor exists.
// Statistics are stored in f32 whatever the activation type; the per-channel sums accumulate in
// double (channel_reduce.cuh says why) and are combined in a fixed order, so results repeat bit
// for bit.
//
// The elementwise kernels walk one image at a time: grid.y over images, so an image's group, and
// the row of its statistics, is found once per image; grid.x and the threads over the image's
// C HW contiguous values, each thread taking kElementsPerThread or more of them. The channel of
// value j of an image is j / HW (NCHW) or j % C (NHWC): a DivWalker keeps it as the thread moves
// on, with no division per element, and in NHWC neighbouring threads read neighbouring channels.
#include <cmath>

#include "ops/batchnorm2d.h"
#include "ops/channel_reduce.cuh"

namespace engine {

namespace {

template <typename T>
struct SumX {
  const T* x;
  struct Row {
    const T* x;
    __device__ cuda::ChannelTerms<1> operator()(int64_t o) const { return {{cuda::load_float(x, o)}}; }
  };
  __device__ Row row(int64_t) const { return {x}; }
};

template <typename T>
struct SumSquaredDeviation {
  const T* x;
  const float* mean;  // (groups, C)
  struct Row {
    const T* x;
    float mean;
    __device__ cuda::ChannelTerms<1> operator()(int64_t o) const {
      const float d = cuda::load_float(x, o) - mean;
      return {{d * d}};
    }
  };
  __device__ Row row(int64_t r) const { return {x, mean[r]}; }
};

// What follows the normalisation (see the file comment).
enum class Fuse { None, Relu, AddRelu };

template <typename Fn>
void dispatch_fuse(Fuse fuse, Fn&& fn) {
  switch (fuse) {
    case Fuse::None: fn.template operator()<Fuse::None>(); break;
    case Fuse::Relu: fn.template operator()<Fuse::Relu>(); break;
    case Fuse::AddRelu: fn.template operator()<Fuse::AddRelu>(); break;
  }
}

// dy as the normalisation's backward sees it: with a fused relu, dz = dy where y > 0, else 0.
template <bool kMask, typename T>
__device__ inline float masked_dy(const T* dy, const T* y, int64_t o) {
  const float g = cuda::load_float(dy, o);
  if constexpr (kMask) return cuda::load_float(y, o) > 0.0f ? g : 0.0f;
  return g;
}

// kMask: dz = dy (y > 0) in place of dy (y unused otherwise).
template <typename T, bool kMask>
struct SumDyAndDyXhat {
  const T* dy;
  const T* y;
  const T* x;
  const float* mean;    // (groups, C)
  const float* invstd;  // (groups, C)
  struct Row {
    const T* dy;
    const T* y;
    const T* x;
    float mean, invstd;
    __device__ cuda::ChannelTerms<2> operator()(int64_t o) const {
      const float g = masked_dy<kMask>(dy, y, o);
      return {{g, g * (cuda::load_float(x, o) - mean) * invstd}};
    }
  };
  __device__ Row row(int64_t r) const { return {dy, y, x, mean[r], invstd[r]}; }
};

// M: the values of one (group, channel).
__global__ void finish_mean_kernel(float* mean, const double* partials, ChannelReducePlan plan, double M) {
  ENGINE_GRID_STRIDE_LOOP(row, plan.rows) {
    mean[row] = static_cast<float>(cuda::combine_partials(partials, plan, 0, row) / M);
  }
}

// The running statistics move by the first group's statistics or by the groups' average:
// mean_g((1 - m) r + m s_g) = (1 - m) r + m mean_g(s_g), so averaging the statistics is averaging
// the groups' updates.
__global__ void finish_variance_kernel(float* invstd, float* running_mean, float* running_var, const float* mean,
                                       const double* partials, ChannelReducePlan plan, int64_t C,
                                       GhostRunningStats rule, double M, double momentum, double eps) {
  const int64_t groups = plan.rows / C, movers = rule == GhostRunningStats::Average ? groups : 1;
  ENGINE_GRID_STRIDE_LOOP(c, C) {
    double moved_mean = 0.0, moved_var = 0.0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t row = g * C + c;
      const double var = cuda::combine_partials(partials, plan, 0, row) / M;
      invstd[row] = static_cast<float>(1.0 / sqrt(var + eps));
      if (g < movers) {
        moved_mean += mean[row];
        moved_var += var * M / (M - 1.0);  // the running variance is unbiased
      }
    }
    if (running_mean)
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * (moved_mean / movers));
    if (running_var)
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * (moved_var / movers));
  }
}

__global__ void invstd_from_running_var_kernel(float* invstd, const float* running_var, int64_t C, double eps) {
  ENGINE_GRID_STRIDE_LOOP(c, C) invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + eps));
}

// partials: [sum dy | sum dy xhat] per (group, channel). Keeps each row's means for dx and sums
// dbeta and dgamma over the groups (the parameters are shared by all groups).
__global__ void finish_backward_kernel(float* dgamma, float* dbeta, float* mean_dy, float* mean_dy_xhat,
                                       const double* partials, ChannelReducePlan plan, int64_t C, double M) {
  const int64_t groups = plan.rows / C;
  ENGINE_GRID_STRIDE_LOOP(c, C) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t row = g * C + c;
      const double dy = cuda::combine_partials(partials, plan, 0, row);
      const double dy_xhat = cuda::combine_partials(partials, plan, 1, row);
      mean_dy[row] = static_cast<float>(dy / M);
      mean_dy_xhat[row] = static_cast<float>(dy_xhat / M);
      sum_dy += dy;
      sum_dy_xhat += dy_xhat;
    }
    if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
    if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xhat);
  }
}

// The elementwise kernels' walk (see the file comment): image n of group n / images_per_group;
// `step` is the grid's x extent in threads, through an image's C HW values split by HW (NCHW,
// channel = q) or C (NHWC, channel = r).
struct ImageWalk {
  ChannelLayout l;
  int64_t images_per_group;
  cuda::DivStep step;
};

constexpr int64_t kElementsPerThread = 4;

// Calls fn(offset, row, c) for every value, row = g C + c indexing the (groups, C) statistics.
template <typename Fn>
__device__ void for_each_value(const ImageWalk& walk, Fn&& fn) {
  const ChannelLayout& l = walk.l;
  const int64_t per_image = l.C * l.HW, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first >= per_image) return;
  const cuda::DivWalker start(first, walk.step);
  for (int64_t n = blockIdx.y; n < l.N; n += gridDim.y) {
    const int64_t image = n * per_image, group_row = n / walk.images_per_group * l.C;
    cuda::DivWalker w = start;
    for (int64_t j = first; j < per_image; j += stride, w.advance(walk.step)) {
      const int64_t c = l.channels_last ? w.r : w.q;
      fn(image + j, group_row + c, c);
    }
  }
}

// The grid of the elementwise kernels over `l` (numel > 0) and its walk.
struct ImageGrid {
  dim3 grid;
  ImageWalk walk;
  ImageGrid(const ChannelLayout& l, int64_t groups) {
    const int64_t per_image = l.C * l.HW, per_block = cuda::kBlock * kElementsPerThread;
    grid = dim3(static_cast<unsigned>((per_image + per_block - 1) / per_block),
                static_cast<unsigned>(std::min<int64_t>(l.N, 65535)));
    const int64_t stride = static_cast<int64_t>(grid.x) * cuda::kBlock;
    const int64_t d = l.channels_last ? l.C : l.HW;
    walk = {l, l.N / groups, cuda::DivStep::make(stride, d, d)};
  }
};

// residual: x's layout, read with Fuse::AddRelu only. relu as ops/elementwise_unary: NaN stays NaN.
template <typename T, Fuse kFuse>
__global__ void normalize_kernel(T* y, const T* x, const T* residual, const float* gamma, const float* beta,
                                 const float* mean, const float* invstd, ImageWalk walk) {
  for_each_value(walk, [&](int64_t o, int64_t row, int64_t c) {
    float v = (cuda::load_float(x, o) - mean[row]) * (gamma[c] * invstd[row]) + beta[c];
    if constexpr (kFuse == Fuse::AddRelu) v += cuda::load_float(residual, o);
    if constexpr (kFuse != Fuse::None) v = v <= 0.0f ? 0.0f : v;
    y[o] = convert_element<T>(v);
  });
}

// Fused: dz = dy (y > 0) for dy; Fuse::AddRelu writes d_residual = dz where d_residual is given.
// dx may then be null (only d_residual wanted); plain batchnorm2d always has dx.
template <typename T, Fuse kFuse>
__global__ void backward_dx_kernel(T* dx, T* d_residual, const T* dy, const T* y, const T* x, const float* gamma,
                                   const float* mean, const float* invstd, const float* mean_dy,
                                   const float* mean_dy_xhat, ImageWalk walk, bool training) {
  for_each_value(walk, [&](int64_t o, int64_t row, int64_t c) {
    const float g = masked_dy<kFuse != Fuse::None>(dy, y, o);
    if constexpr (kFuse == Fuse::AddRelu)
      if (d_residual) d_residual[o] = convert_element<T>(g);
    if constexpr (kFuse != Fuse::None)
      if (!dx) return;
    const float k = gamma[c] * invstd[row];
    if (training) {
      const float xhat = (cuda::load_float(x, o) - mean[row]) * invstd[row];
      dx[o] = convert_element<T>(k * (g - mean_dy[row] - xhat * mean_dy_xhat[row]));
    } else {
      dx[o] = convert_element<T>(k * g);
    }
  });
}

// The launch sequences, shared by batchnorm2d and the fused ops.
void forward_train(int device, void* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                   const void* x, const void* residual, const float* gamma, const float* beta, DType dtype,
                   ChannelLayout l, int64_t groups, GhostRunningStats rule, double momentum, double eps, Fuse fuse) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const double M = static_cast<double>(l.N / groups * l.HW);
  const ChannelReducePlan plan = cuda::channel_reduce_plan(device, l, groups);
  CudaScratch<double> partials(device, plan.splits * plan.rows);
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    const T* xt = static_cast<const T*>(x);
    cuda::launch_channel_partials<1>("channel partials (mean)", partials.ptr, plan, l, groups, SumX<T>{xt}, stream);
    cuda::launch("finish_mean_kernel", finish_mean_kernel, cuda::elementwise_grid(plan.rows, cuda::kBlock),
        cuda::kBlock, 0, stream, save_mean, partials.ptr, plan, M);
    cuda::launch_channel_partials<1>("channel partials (variance)", partials.ptr, plan, l, groups,
        SumSquaredDeviation<T>{xt, save_mean}, stream);
    cuda::launch("finish_variance_kernel", finish_variance_kernel, cuda::elementwise_grid(l.C, cuda::kBlock),
        cuda::kBlock, 0, stream, save_invstd, running_mean, running_var, save_mean, partials.ptr, plan, l.C, rule, M,
        momentum, eps);
    if (l.numel() == 0) return;
    const ImageGrid ig(l, groups);
    dispatch_fuse(fuse, [&]<Fuse F>() {
      cuda::launch("normalize_kernel", normalize_kernel<T, F>, ig.grid, cuda::kBlock, 0, stream, static_cast<T*>(y),
          xt, static_cast<const T*>(residual), gamma, beta, save_mean, save_invstd, ig.walk);
    });
  });
}

void forward_eval(int device, void* y, float* save_invstd, const void* x, const void* residual, const float* gamma,
                  const float* beta, const float* running_mean, const float* running_var, DType dtype,
                  ChannelLayout l, double eps, Fuse fuse) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("invstd_from_running_var_kernel", invstd_from_running_var_kernel,
      cuda::elementwise_grid(l.C, cuda::kBlock), cuda::kBlock, 0, stream, save_invstd, running_var, l.C, eps);
  if (l.numel() == 0) return;
  const ImageGrid ig(l, 1);
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    dispatch_fuse(fuse, [&]<Fuse F>() {
      cuda::launch("normalize_kernel", normalize_kernel<T, F>, ig.grid, cuda::kBlock, 0, stream, static_cast<T*>(y),
          static_cast<const T*>(x), static_cast<const T*>(residual), gamma, beta, running_mean, save_invstd,
          ig.walk);
    });
  });
}

void backward(int device, void* dx, void* d_residual, float* dgamma, float* dbeta, const void* dy, const void* y,
              const void* x, const float* gamma, const float* mean, const float* invstd, DType dtype,
              ChannelLayout l, int64_t groups, bool training, Fuse fuse) {
  if (l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const ChannelReducePlan plan = cuda::channel_reduce_plan(device, l, groups);
  CudaScratch<double> partials(device, 2 * plan.splits * plan.rows);
  CudaScratch<float> means(device, 2 * plan.rows);  // [mean dy | mean dy xhat] per (group, channel)
  cuda::dispatch_activation(dtype, "batchnorm2d", [&]<typename T>() {
    const T* dyt = static_cast<const T*>(dy);
    const T* yt = static_cast<const T*>(y);
    const T* xt = static_cast<const T*>(x);
    if (fuse == Fuse::None)
      cuda::launch_channel_partials<2>("channel partials (backward)", partials.ptr, plan, l, groups,
          SumDyAndDyXhat<T, false>{dyt, yt, xt, mean, invstd}, stream);
    else
      cuda::launch_channel_partials<2>("channel partials (backward, relu mask)", partials.ptr, plan, l, groups,
          SumDyAndDyXhat<T, true>{dyt, yt, xt, mean, invstd}, stream);
    cuda::launch("finish_backward_kernel", finish_backward_kernel, cuda::elementwise_grid(l.C, cuda::kBlock),
        cuda::kBlock, 0, stream, dgamma, dbeta, means.ptr, means.ptr + plan.rows, partials.ptr, plan, l.C,
        static_cast<double>(l.N / groups * l.HW));
    if ((!dx && !d_residual) || l.numel() == 0) return;
    const ImageGrid ig(l, groups);
    dispatch_fuse(fuse, [&]<Fuse F>() {
      cuda::launch("backward_dx_kernel", backward_dx_kernel<T, F>, ig.grid, cuda::kBlock, 0, stream,
          static_cast<T*>(dx), static_cast<T*>(d_residual), dyt, yt, xt, gamma, mean, invstd, means.ptr,
          means.ptr + plan.rows, ig.walk, training);
    });
  });
}

}  // namespace

void batchnorm2d_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd, float* running_mean,
                                    float* running_var, const void* x, const float* gamma, const float* beta,
                                    DType dtype, ChannelLayout l, int64_t groups, GhostRunningStats rule,
                                    double momentum, double eps) {
  forward_train(device, y, save_mean, save_invstd, running_mean, running_var, x, nullptr, gamma, beta, dtype, l,
                groups, rule, momentum, eps, Fuse::None);
}

void batchnorm2d_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const float* gamma,
                                   const float* beta, const float* running_mean, const float* running_var,
                                   DType dtype, ChannelLayout l, double eps) {
  forward_eval(device, y, save_invstd, x, nullptr, gamma, beta, running_mean, running_var, dtype, l, eps, Fuse::None);
}

void batchnorm2d_backward_cuda(int device, void* dx, float* dgamma, float* dbeta, const void* dy, const void* x,
                               const float* gamma, const float* mean, const float* invstd, DType dtype,
                               ChannelLayout l, int64_t groups, bool training) {
  backward(device, dx, nullptr, dgamma, dbeta, dy, nullptr, x, gamma, mean, invstd, dtype, l, groups, training,
           Fuse::None);
}

void batchnorm2d_relu_forward_train_cuda(int device, void* y, float* save_mean, float* save_invstd,
                                         float* running_mean, float* running_var, const void* x,
                                         const void* residual, const float* gamma, const float* beta, DType dtype,
                                         ChannelLayout l, int64_t groups, GhostRunningStats rule, double momentum,
                                         double eps) {
  forward_train(device, y, save_mean, save_invstd, running_mean, running_var, x, residual, gamma, beta, dtype, l,
                groups, rule, momentum, eps, residual ? Fuse::AddRelu : Fuse::Relu);
}

void batchnorm2d_relu_forward_eval_cuda(int device, void* y, float* save_invstd, const void* x, const void* residual,
                                        const float* gamma, const float* beta, const float* running_mean,
                                        const float* running_var, DType dtype, ChannelLayout l, double eps) {
  forward_eval(device, y, save_invstd, x, residual, gamma, beta, running_mean, running_var, dtype, l, eps,
               residual ? Fuse::AddRelu : Fuse::Relu);
}

void batchnorm2d_relu_backward_cuda(int device, void* dx, void* d_residual, float* dgamma, float* dbeta,
                                    const void* dy, const void* y, const void* x, const float* gamma,
                                    const float* mean, const float* invstd, DType dtype, ChannelLayout l,
                                    int64_t groups, bool training) {
  backward(device, dx, d_residual, dgamma, dbeta, dy, y, x, gamma, mean, invstd, dtype, l, groups, training,
           d_residual ? Fuse::AddRelu : Fuse::Relu);
}

}  // namespace engine
