// gaussian_filter.cpp - the taps, checks and dispatch of the Gaussian blur and the high-pass
// filter (no autograd: see gaussian_filter.h).
#include <cmath>

#include "engine/autograd.h"
#include "ops/elementwise_binary.h"
#include "ops/gaussian_filter.h"

namespace engine {

std::vector<float> gaussian_kernel_1d(int size, double sigma) {
  ENGINE_CHECK(size > 0 && size % 2 == 1, "gaussian_kernel_1d: the kernel size must be odd and positive, found {}",
               size);
  ENGINE_CHECK(sigma > 0.0, "gaussian_kernel_1d: sigma must be positive, found {}", sigma);
  // float32 throughout, as torchvision: the positions are whole numbers (exact), then
  // exp(-0.5 (x / sigma)^2) and the division by the sum are each rounded to float.
  const float half = static_cast<float>(size - 1) * 0.5f, s = static_cast<float>(sigma);
  std::vector<float> taps(size);
  float sum = 0.0f;
  for (int i = 0; i < size; ++i) {
    const float r = (static_cast<float>(i) - half) / s;
    taps[i] = std::exp(-0.5f * (r * r));
    sum += taps[i];
  }
  for (float& t : taps) t /= sum;
  return taps;
}

Tensor gaussian_blur(const Tensor& x, int kernel_size, double sigma) {
  check_defined(x, "gaussian_blur", "x");
  ENGINE_CHECK(x.dim() == 4, "gaussian_blur: expected x (N, C, H, W), found {}", x.str());
  ENGINE_CHECK(x.dtype() == DType::f32 || (x.dtype() == DType::f64 && x.device().is_cpu()),
               "gaussian_blur: expected f32 (or f64 on the CPU), found {}; convert x with .to(DType::f32)", x.str());
  ENGINE_CHECK(kernel_size <= kMaxGaussianTaps, "gaussian_blur: the kernel size {} exceeds the largest supported, {}",
               kernel_size, kMaxGaussianTaps);
  ENGINE_CHECK(!autograd::needs_grad({&x}),
               "gaussian_blur: x {} requires grad, but the fixed filters have no backward; detach x or run under "
               "NoGradGuard",
               x.str());
  const std::vector<float> taps = gaussian_kernel_1d(kernel_size, sigma);
  const int64_t pad = (kernel_size - 1) / 2, H = x.size(2), W = x.size(3), planes = x.size(0) * x.size(1);
  ENGINE_CHECK(H > pad && W > pad,
               "gaussian_blur: reflect padding of {} pixels needs H and W above {}, found {}; use a smaller kernel "
               "or a larger image",
               pad, pad, x.str());
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "gaussian_blur", [&]<typename T>() {
      gaussian_blur_cpu<T>(y.data<T>(), xc.data<T>(), planes, H, W, taps.data(), kernel_size);
    });
  } else {
    ENGINE_DISPATCH_CUDA(x.device(), "gaussian_blur",
                         gaussian_blur_cuda(x.device().index, y.data<float>(), xc.data<float>(), planes, H, W,
                                            taps.data(), kernel_size));
  }
  return y;
}

Tensor high_pass(const Tensor& x, int kernel_size, double sigma) {
  const Tensor blurred = gaussian_blur(x, kernel_size, sigma);
  return sub(x, blurred);
}

}  // namespace engine
