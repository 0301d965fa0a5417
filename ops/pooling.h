// pooling.h - maxpool2d (with its argmax saved) and global average pooling.
//
// maxpool2d, kernel k, stride s, padding p (square; padding counts as -infinity, p <= k/2):
//     y[n, c, i, j] = max over the window rows i s - p .. i s - p + k - 1 (cols likewise) of x
//     argmax[n, c, i, j] = h W + w of the element chosen (the first maximum in row-major window
//                          order; a NaN wins, as PyTorch propagates it)
//     P = (H + 2p - k) / s + 1 (floor), Q likewise
//   backward: dx[n, c, h, w] = sum of dy[n, c, i, j] over the outputs whose argmax is (h, w)
//   (a pixel can win several overlapping windows). The CUDA backward gathers these per input
//   pixel instead of scattering with atomics: deterministic, and it works for bf16.
// avgpool_global: y[n, c] = (1/HW) sum over h, w of x[n, c, h, w]; dx = dy[n, c] / HW.
// region_avgpool, R regions, each a weighting of one image's H x W cells (a part's share of each
//   cell, ssl/eval/part_probe.h):
//     y[r, c] = sum_i w[r, i] x[image[r], c, i] / sum_i w[r, i]       (0 when sum_i w[r, i] = 0)
//   w (R, H, W) >= 0, image (R) i64 in [0, N); y (R, C). It pools frozen features for probing and
//   has no backward: x must not require a gradient. The sums are taken in double (CPU) or float
//   (CUDA), cell by cell in order, and the division comes last.
//
// Layouts: x NCHW or NHWC (ChannelLayout); maxpool's y, argmax and dx take x's layout; the
// global pool's y is (N, C) either way. Types: CPU float/double (bf16 through the f32 reference,
// ops/cpu_bf16.h), CUDA f32/bf16 (f32 sums); region_avgpool's weights are f32 for a bf16 x, else
// x's type, its y x's type.
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "ops/channel_layout.h"

namespace engine {

struct MaxPool2dGeometry {
  int64_t N, C, H, W, P, Q;
  int64_t kernel, stride, padding;
  bool channels_last;
  ENGINE_HD ChannelLayout input() const { return {N, C, H * W, channels_last}; }
  ENGINE_HD ChannelLayout output() const { return {N, C, P * Q, channels_last}; }
  static MaxPool2dGeometry make(const Shape& x, int64_t kernel, int64_t stride, int64_t padding, bool channels_last);
};

// ---- raw level ----
template <typename T>
void maxpool2d_forward_cpu(T* y, int32_t* argmax, const T* x, const MaxPool2dGeometry& g);
template <typename T>
void maxpool2d_backward_cpu(T* dx, const T* dy, const int32_t* argmax, const MaxPool2dGeometry& g);
void maxpool2d_forward_cuda(int device, void* y, int32_t* argmax, const void* x, DType dtype,
                            const MaxPool2dGeometry& g);
void maxpool2d_backward_cuda(int device, void* dx, const void* dy, const int32_t* argmax, DType dtype,
                             const MaxPool2dGeometry& g);

template <typename T>
void avgpool_global_forward_cpu(T* y, const T* x, ChannelLayout layout);
template <typename T>
void avgpool_global_backward_cpu(T* dx, const T* dy, ChannelLayout layout);
void avgpool_global_forward_cuda(int device, void* y, const void* x, DType dtype, ChannelLayout layout);
void avgpool_global_backward_cuda(int device, void* dx, const void* dy, DType dtype, ChannelLayout layout);

template <typename T>
void region_avgpool_forward_cpu(T* y, const T* x, const T* weights, const int64_t* image, int64_t R,
                                ChannelLayout layout);
void region_avgpool_forward_cuda(int device, void* y, const void* x, const float* weights, const int64_t* image,
                                 DType dtype, int64_t R, ChannelLayout layout);

// ---- Tensor level ----
Tensor maxpool2d(const Tensor& x, int64_t kernel = 3, int64_t stride = 2, int64_t padding = 1);
Tensor avgpool_global(const Tensor& x);  // (N, C, H, W) -> (N, C)
// x (N, C, H, W), weights (R, H, W), image (R) i64 -> (R, C). Checks image's range on the host
// (image must be a CPU tensor; it is copied to x's device).
Tensor region_avgpool(const Tensor& x, const Tensor& weights, const Tensor& image);

}  // namespace engine
