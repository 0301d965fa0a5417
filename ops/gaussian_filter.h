// gaussian_filter.h - the fixed image filters of the method (METHOD.md section 3): torchvision's
// GaussianBlur on tensors, and the high-pass filter built on it.
//
// Taps (torchvision's construction, all in float32): for size k (odd) and sigma,
//     x_i = -(k-1)/2 + i,  g_i = exp(-0.5 (x_i / sigma)^2),  taps_i = g_i / sum_j g_j   (i = 0..k-1)
// gaussian_blur: each (n, c) plane is cross-correlated with the 2-D kernel taps taps^T after
// *reflect* padding of p = (k-1)/2 on every side (mirror about the edge pixel without repeating
// it: index -1 -> 1, -2 -> 2, n -> n-2), so the output has the input's shape. It is computed as two
// 1-D passes, horizontal (along W) first, then vertical (along H) on the horizontal result; this
// equals torchvision's single 2-D convolution up to float rounding (~1e-7 relative, METHOD.md 3.1).
// Reflect padding needs H > p and W > p.
// high_pass(x) = x - gaussian_blur(x, 11, 5) by default (METHOD.md 3.1's HP).
//
// Rounding: each pass sums taps_j * v in tap order j = 0..k-1, one rounded product and one
// rounded sum per tap in the element type (no FMA: the CPU build uses -ffp-contract=off and the
// CUDA kernels __fmul_rn/__fadd_rn), so the f32 CUDA kernels follow the CPU reference's rounding.
//
// These filters transform data and are never trained through: no autograd. The Tensor level
// refuses an x that requires grad while grad mode is on (detach it, or run under NoGradGuard).
// Types: CPU f32 and f64, CUDA f32.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace engine {

// The largest kernel the CUDA kernels take (their taps travel as a kernel argument).
constexpr int kMaxGaussianTaps = 63;

// The k float32 taps described above; k odd and positive, sigma > 0.
std::vector<float> gaussian_kernel_1d(int size, double sigma);

// ---- raw level: `planes` contiguous H x W planes; taps: k host floats; out must not alias x ----
template <typename T>
void gaussian_blur_cpu(T* out, const T* x, int64_t planes, int64_t H, int64_t W, const float* taps, int k);
void gaussian_blur_cuda(int device, float* out, const float* x, int64_t planes, int64_t H, int64_t W,
                        const float* taps, int k);

// ---- Tensor level: x (N, C, H, W), any strides; the result is contiguous, same shape and dtype ----
Tensor gaussian_blur(const Tensor& x, int kernel_size, double sigma);
Tensor high_pass(const Tensor& x, int kernel_size = 11, double sigma = 5.0);

}  // namespace engine
