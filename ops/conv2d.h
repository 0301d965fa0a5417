// conv2d.h - 2-D convolution (cross-correlation, as every framework computes it).
//
// Contract. x (N, C, H, W), weight (K, C/G, R, S), optional bias (K), G = groups; output y (N, K, P, Q):
//     y[n, k, p, q] = bias[k] + sum_{c in group(k), r, s} x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]
//                                                          * weight[k, c - first(group(k)), r, s]
// with zero padding outside the image, P = (H + 2 ph - dh (R - 1) - 1) / sh + 1 (Q likewise), and
// group(k) the C/G input channels of output channel k's group. Backward, dy of y's shape:
//     dx = the transposed convolution of dy with weight (backward data),
//     dweight[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q] x[n, c + first, p*sh - ph + r*dh, ...]
//     dbias[k] = sum_{n, p, q} dy[n, k, p, q]              (all overwritten, never accumulated)
// The forward saves x and weight.
//
// CPU reference: im2col + GEMM (OpenBLAS when built with it), NCHW, float and double (bf16 tensors
// through it in f32, y rounded to bf16: ops/cpu_bf16.h); a 1x1 stride-1 unpadded convolution is a
// plain GEMM on x. CUDA: cuDNN 9 for forward, backward data and
// backward filter, NCHW or NHWC, f32 or bf16 storage with f32 accumulation (TF32 when switched on);
// the algorithm is chosen once per shape by timing every candidate (as cudnn.benchmark) and cached,
// with its workspace from the caching allocator; deterministic mode keeps only deterministic
// algorithms. The bias is added and reduced by our own small kernels.
//
// Layouts at the Tensor level: the output and dx take x's memory format (NCHW or NHWC). On the CPU
// an NHWC input is computed in NCHW and converted back; on CUDA cuDNN works in NHWC directly and the
// weight is used in the same format (a KRSC copy when it is stored KCRS).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  static Conv2dOptions square(int64_t stride, int64_t padding, int64_t dilation = 1, int64_t groups = 1) {
    return {stride, stride, padding, padding, dilation, dilation, groups};
  }
};

// Every size the kernels need, derived and checked once.
struct Conv2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t K, R, S;     // output channels, kernel height and width
  int64_t P, Q;        // output height and width
  Conv2dOptions opt;
  int64_t groups() const { return opt.groups; }
  int64_t c_per_group() const { return C / opt.groups; }
  int64_t k_per_group() const { return K / opt.groups; }
  bool is_pointwise() const;  // 1x1, stride 1, no padding: the convolution is a GEMM on x itself
  // Throws, naming every size, when the shapes do not fit together.
  static Conv2dGeometry make(const Shape& x, const Shape& weight, const Conv2dOptions& opt);
};

// ---- raw level, CPU: NCHW contiguous, T = float or double; bias and dbias may be null ----
template <typename T>
void conv2d_forward_cpu(T* y, const T* x, const T* weight, const T* bias, const Conv2dGeometry& g);
template <typename T>
void conv2d_backward_data_cpu(T* dx, const T* dy, const T* weight, const Conv2dGeometry& g);
template <typename T>
void conv2d_backward_filter_cpu(T* dweight, T* dbias, const T* dy, const T* x, const Conv2dGeometry& g);

// ---- raw level, CUDA (cuDNN): dtype f32 or bf16, all tensors in one layout (NCHW, or NHWC
// when channels_last, the weight then KRSC); bias and dbias may be null ----
void conv2d_forward_cuda(int device, void* y, const void* x, const void* weight, const void* bias, DType dtype,
                         bool channels_last, const Conv2dGeometry& g);
void conv2d_backward_data_cuda(int device, void* dx, const void* dy, const void* weight, DType dtype,
                               bool channels_last, const Conv2dGeometry& g);
void conv2d_backward_filter_cuda(int device, void* dweight, void* dbias, const void* dy, const void* x, DType dtype,
                                 bool channels_last, const Conv2dGeometry& g);
// The bias kernels the CUDA path uses: y[n, k, ...] += bias[k]; dbias[k] = sum over n, p, q of dy.
void conv2d_bias_forward_cuda(int device, void* y, const void* bias, DType dtype, bool channels_last, int64_t N,
                              int64_t K, int64_t PQ);
void conv2d_bias_backward_cuda(int device, void* dbias, const void* dy, DType dtype, bool channels_last, int64_t N,
                               int64_t K, int64_t PQ);

// ---- Tensor level ----
// bias may be an undefined Tensor (no bias, as in every ResNet convolution).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt = {});

}  // namespace engine
