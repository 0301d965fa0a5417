// pooling_cuda.cu - maxpool2d, global and region average pooling on CUDA: one thread per output element
// (per input element for maxpool's backward, which gathers rather than scatters).
#include <cmath>

#include "ops/channel_reduce.cuh"
#include "ops/pooling.h"

namespace engine {

namespace {

// (n, c, spatial index) of the element at `offset` of a layout.
struct Position {
  int64_t n, c, i;
};
__device__ inline Position position(const ChannelLayout& l, int64_t offset) {
  if (l.channels_last) return {offset / (l.HW * l.C), offset % l.C, offset / l.C % l.HW};
  return {offset / (l.C * l.HW), offset / l.HW % l.C, offset % l.HW};
}

template <typename T>
__global__ void maxpool_forward_kernel(T* y, int32_t* argmax, const T* x, MaxPool2dGeometry g) {
  const ChannelLayout in = g.input(), out = g.output();
  ENGINE_GRID_STRIDE_LOOP(o, out.numel()) {
    const Position at = position(out, o);
    const int64_t i = at.i / g.Q, j = at.i % g.Q;
    float best = -INFINITY;
    int64_t best_at = -1;
    bool found_nan = false;
    for (int64_t h = i * g.stride - g.padding; h < i * g.stride - g.padding + g.kernel && !found_nan; ++h) {
      if (h < 0 || h >= g.H) continue;
      for (int64_t w = j * g.stride - g.padding; w < j * g.stride - g.padding + g.kernel; ++w) {
        if (w < 0 || w >= g.W) continue;
        const float v = cuda::load_float(x, in.offset(at.n, at.c, h * g.W + w));
        if (best_at < 0 || v > best || isnan(v)) {
          best = v;
          best_at = h * g.W + w;
          if (isnan(v)) {
            found_nan = true;
            break;
          }
        }
      }
    }
    y[o] = convert_element<T>(best);
    argmax[o] = static_cast<int32_t>(best_at);
  }
}

__device__ inline int64_t clamp_low(int64_t low, int64_t v) { return v < low ? low : v; }
__device__ inline int64_t clamp_high(int64_t high, int64_t v) { return v > high ? high : v; }

// For input pixel (h, w): the outputs whose window covers it are rows i with
// i s - p <= h <= i s - p + k - 1, i.e. ceil((h + p - k + 1) / s) <= i <= floor((h + p) / s).
template <typename T>
__global__ void maxpool_backward_kernel(T* dx, const T* dy, const int32_t* argmax, MaxPool2dGeometry g) {
  const ChannelLayout in = g.input(), out = g.output();
  ENGINE_GRID_STRIDE_LOOP(o, in.numel()) {
    const Position at = position(in, o);
    const int64_t h = at.i / g.W, w = at.i % g.W;
    const int64_t i_lo = clamp_low(0, (h + g.padding - g.kernel + g.stride) / g.stride);
    const int64_t i_hi = clamp_high(g.P - 1, (h + g.padding) / g.stride);
    const int64_t j_lo = clamp_low(0, (w + g.padding - g.kernel + g.stride) / g.stride);
    const int64_t j_hi = clamp_high(g.Q - 1, (w + g.padding) / g.stride);
    float sum = 0.f;
    for (int64_t i = i_lo; i <= i_hi; ++i)
      for (int64_t j = j_lo; j <= j_hi; ++j) {
        const int64_t oo = out.offset(at.n, at.c, i * g.Q + j);
        if (argmax[oo] == at.i) sum += cuda::load_float(dy, oo);
      }
    dx[o] = convert_element<T>(sum);
  }
}

// One thread per (n, c): in NHWC neighbouring threads read neighbouring channels (coalesced).
template <typename T>
__global__ void avgpool_forward_kernel(T* y, const T* x, ChannelLayout l) {
  ENGINE_GRID_STRIDE_LOOP(nc, l.N * l.C) {
    const int64_t n = nc / l.C, c = nc % l.C;
    float sum = 0.f;
    for (int64_t i = 0; i < l.HW; ++i) sum += cuda::load_float(x, l.offset(n, c, i));
    y[nc] = convert_element<T>(sum / static_cast<float>(l.HW));
  }
}

template <typename T>
__global__ void avgpool_backward_kernel(T* dx, const T* dy, ChannelLayout l) {
  ENGINE_GRID_STRIDE_LOOP(o, l.numel()) {
    const Position at = position(l, o);
    dx[o] = convert_element<T>(cuda::load_float(dy, at.n * l.C + at.c) / static_cast<float>(l.HW));
  }
}

// One thread per (r, c), as the global pool: in NHWC neighbouring threads read neighbouring
// channels of the same cell; every thread of a region reads the same weights (cached).
template <typename T>
__global__ void region_avgpool_kernel(T* y, const T* x, const float* weights, const int64_t* image, int64_t R,
                                      ChannelLayout l) {
  ENGINE_GRID_STRIDE_LOOP(rc, R * l.C) {
    const int64_t r = rc / l.C, c = rc % l.C, n = image[r];
    const float* w = weights + r * l.HW;
    float sum = 0.f, total = 0.f;
    for (int64_t i = 0; i < l.HW; ++i) {
      sum += w[i] * cuda::load_float(x, l.offset(n, c, i));
      total += w[i];
    }
    y[rc] = convert_element<T>(total > 0.f ? sum / total : 0.f);
  }
}

int grid_for(int64_t n) { return cuda::elementwise_grid(n, cuda::kBlock); }

}  // namespace

void maxpool2d_forward_cuda(int device, void* y, int32_t* argmax, const void* x, DType dtype,
                            const MaxPool2dGeometry& g) {
  const int64_t n = g.output().numel();
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "maxpool2d", [&]<typename T>() {
    cuda::launch("maxpool_forward_kernel", maxpool_forward_kernel<T>, grid_for(n), cuda::kBlock, 0, stream,
        static_cast<T*>(y), argmax, static_cast<const T*>(x), g);
  });
}

void maxpool2d_backward_cuda(int device, void* dx, const void* dy, const int32_t* argmax, DType dtype,
                             const MaxPool2dGeometry& g) {
  const int64_t n = g.input().numel();
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "maxpool2d", [&]<typename T>() {
    cuda::launch("maxpool_backward_kernel", maxpool_backward_kernel<T>, grid_for(n), cuda::kBlock, 0, stream,
        static_cast<T*>(dx), static_cast<const T*>(dy), argmax, g);
  });
}

void avgpool_global_forward_cuda(int device, void* y, const void* x, DType dtype, ChannelLayout l) {
  if (l.N * l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "avgpool_global", [&]<typename T>() {
    cuda::launch("avgpool_forward_kernel", avgpool_forward_kernel<T>, grid_for(l.N * l.C), cuda::kBlock, 0, stream,
        static_cast<T*>(y), static_cast<const T*>(x), l);
  });
}

void avgpool_global_backward_cuda(int device, void* dx, const void* dy, DType dtype, ChannelLayout l) {
  if (l.numel() == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "avgpool_global", [&]<typename T>() {
    cuda::launch("avgpool_backward_kernel", avgpool_backward_kernel<T>, grid_for(l.numel()), cuda::kBlock, 0, stream,
        static_cast<T*>(dx), static_cast<const T*>(dy), l);
  });
}

void region_avgpool_forward_cuda(int device, void* y, const void* x, const float* weights, const int64_t* image,
                                 DType dtype, int64_t R, ChannelLayout l) {
  if (R * l.C == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::dispatch_activation(dtype, "region_avgpool", [&]<typename T>() {
    cuda::launch("region_avgpool_kernel", region_avgpool_kernel<T>, grid_for(R * l.C), cuda::kBlock, 0, stream,
        static_cast<T*>(y), static_cast<const T*>(x), weights, image, R, l);
  });
}

}  // namespace engine
