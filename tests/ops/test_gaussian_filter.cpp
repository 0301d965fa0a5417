// test_gaussian_filter.cpp - the fixed filters against METHOD.md 12.1's vectors (computed with
// torchvision 0.14), against a direct 2-D reflect-padded convolution, and their argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

constexpr int64_t kSide = 224;  // the method's crop size, as in METHOD.md's vectors

// An (N, C, H, W) f32 tensor with value(n, c, h, w).
Tensor image(const Shape& shape, const std::function<double(int64_t, int64_t, int64_t, int64_t)>& value,
             DType dtype = DType::f32) {
  std::vector<double> v(shape_numel(shape));
  size_t i = 0;
  for (int64_t n = 0; n < shape[0]; ++n)
    for (int64_t c = 0; c < shape[1]; ++c)
      for (int64_t h = 0; h < shape[2]; ++h)
        for (int64_t w = 0; w < shape[3]; ++w) v[i++] = value(n, c, h, w);
  return Tensor::from_vector(v, shape).to(dtype);
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

TEST(GaussianFilter, Kernel11Sigma5TapsAreTheSpecsAndSumToOne) {
  // METHOD.md 12.1 #1 (taps listed in section 3.1).
  const std::vector<double> expected = {0.0663417, 0.0794254, 0.0913609, 0.1009695, 0.1072131, 0.1093789,
                                        0.1072131, 0.1009695, 0.0913609, 0.0794254, 0.0663417};
  const std::vector<float> taps = gaussian_kernel_1d(11, 5.0);
  ASSERT_EQ(taps.size(), expected.size());
  double sum = 0;
  for (size_t i = 0; i < taps.size(); ++i) {
    EXPECT_NEAR(taps[i], expected[i], 1e-7) << "tap " << i;
    sum += taps[i];
  }
  EXPECT_NEAR(sum, 1.0, 1.2e-7);
}

TEST(GaussianFilter, Kernel31Sigma10CenterAndEndTaps) {
  // METHOD.md 12.1 #2.
  const std::vector<float> taps = gaussian_kernel_1d(31, 10.0);
  ASSERT_EQ(taps.size(), 31u);
  EXPECT_NEAR(taps[15], 0.04538523, 1e-8);
  EXPECT_NEAR(taps[0], 0.01473443, 1e-8);
  EXPECT_NEAR(taps[30], 0.01473443, 1e-8);
  double sum = 0;
  for (float t : taps) sum += t;
  EXPECT_NEAR(sum, 1.0, 1.2e-7);
}

TEST(GaussianFilter, HighPassOfAConstantImageIsZero) {
  // METHOD.md 12.1 #3.
  const Tensor x = Tensor::full({1, 3, kSide, kSide}, 0.75);
  EXPECT_LE(max_abs(high_pass(x).to_vector<float>()), 2e-7);
}

TEST(GaussianFilter, HighPassOfAHorizontalRampVanishesInsideAndNotAtTheBorders) {
  // METHOD.md 12.1 #4: x(c) = c / 223 on every row and channel.
  const Tensor x = image({1, 3, kSide, kSide}, [](int64_t, int64_t, int64_t, int64_t w) { return w / 223.0; });
  const std::vector<float> y = high_pass(x).to_vector<float>();
  const std::vector<double> left = {-0.0110551, -0.0070613, -0.0040290, -0.0019023, -0.0005950};
  for (int64_t p = 0; p < 3 * kSide; ++p) {
    const float* row = y.data() + p * kSide;
    for (int64_t w = 5; w <= 218; ++w) ASSERT_LE(std::fabs(row[w]), 4e-7) << "row " << p << " column " << w;
    for (int64_t w = 0; w < 5; ++w) {
      ASSERT_NEAR(row[w], left[w], 1e-6) << "row " << p << " column " << w;
      ASSERT_NEAR(row[kSide - 1 - w], -left[w], 1e-6) << "row " << p << " column " << kSide - 1 - w;
    }
  }
  EXPECT_NEAR(y[kSide - 1], 0.0110552, 1e-6);
}

TEST(GaussianFilter, HighPassImpulseResponse) {
  // METHOD.md 12.1 #5: a single 1 at (112, 112).
  const Tensor x = image({1, 1, kSide, kSide},
                         [](int64_t, int64_t, int64_t h, int64_t w) { return h == 112 && w == 112 ? 1.0 : 0.0; });
  const std::vector<float> y = high_pass(x).to_vector<float>();
  auto at = [&](int64_t h, int64_t w) { return y[h * kSide + w]; };
  EXPECT_NEAR(at(112, 112), 0.98803627, 1e-7);
  EXPECT_NEAR(at(112, 113), -0.01172685, 1e-8);
  EXPECT_NEAR(at(107, 107), -0.00440122, 1e-8);
  for (int64_t h = 0; h < kSide; ++h)
    for (int64_t w = 0; w < kSide; ++w)
      if (std::max(std::abs(h - 112), std::abs(w - 112)) >= 6) {
        ASSERT_EQ(at(h, w), 0.0f) << h << ", " << w;
      }
}

TEST(GaussianFilter, HighPassOfACheckerboardInterior) {
  // METHOD.md 12.1 #6: value (r + c) mod 2; the interior is where the padding does not reach.
  const Tensor x = image({1, 1, kSide, kSide}, [](int64_t, int64_t, int64_t h, int64_t w) { return (h + w) % 2; });
  const std::vector<float> y = high_pass(x).to_vector<float>();
  for (int64_t h = 5; h < kSide - 5; ++h)
    for (int64_t w = 5; w < kSide - 5; ++w)
      ASSERT_NEAR(y[h * kSide + w], (h + w) % 2 == 0 ? -0.4982202 : 0.4982201, 1e-6) << h << ", " << w;
}

TEST(GaussianFilter, StrongBlurOfAConstantReturnsIt) {
  // METHOD.md 12.1 #7: BL is kernel 31, sigma 10.
  const Tensor x = Tensor::full({2, 3, kSide, kSide}, 0.6);
  const std::vector<float> y = gaussian_blur(x, 31, 10.0).to_vector<float>();
  for (float v : y) ASSERT_NEAR(v, 0.6f, 3e-7);
}

TEST(GaussianFilter, SeparableBlurEqualsDirectReflectConvolution) {
  // f64, the smallest image that kernel 11 allows (H = 6) and a wider one: every output pixel
  // against the 2-D sum over the outer product of the taps with reflected indices.
  for (const Shape& shape : {Shape{1, 2, 6, 9}, Shape{2, 1, 13, 7}}) {
    const int k = shape[2] == 6 ? 11 : 5;
    const double sigma = k == 11 ? 5.0 : 1.5;
    const Tensor x = image(
        shape, [](int64_t n, int64_t c, int64_t h, int64_t w) { return std::sin(0.7 * h + 1.3 * w + n + 2.0 * c); },
        DType::f64);
    const std::vector<double> in = x.to_vector<double>(), out = gaussian_blur(x, k, sigma).to_vector<double>();
    const std::vector<float> g = gaussian_kernel_1d(k, sigma);
    const int64_t H = shape[2], W = shape[3], pad = (k - 1) / 2;
    auto reflect = [](int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
    for (int64_t p = 0; p < shape[0] * shape[1]; ++p)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          double expected = 0;
          for (int i = 0; i < k; ++i)
            for (int j = 0; j < k; ++j)
              expected += static_cast<double>(g[i]) * g[j] *
                          in[(p * H + reflect(h - pad + i, H)) * W + reflect(w - pad + j, W)];
          ASSERT_NEAR(out[(p * H + h) * W + w], expected, 1e-12) << shape_str(shape) << " at " << p << ", " << h
                                                                 << ", " << w;
        }
  }
}

TEST(GaussianFilter, RejectsImagesTooSmallForTheReflectPadding) {
  // Kernel 11 pads by 5: H and W must be at least 6.
  EXPECT_THROW(high_pass(Tensor::zeros({1, 3, 5, 20})), Error) << "H = 5";
  EXPECT_THROW(high_pass(Tensor::zeros({1, 3, 20, 5})), Error) << "W = 5";
  EXPECT_THROW(gaussian_blur(Tensor::zeros({1, 1, 15, 40}), 31, 10.0), Error) << "kernel 31, H = 15";
  EXPECT_NO_THROW(high_pass(Tensor::zeros({1, 3, 6, 6})));
}

TEST(GaussianFilter, RejectsBadArguments) {
  const Tensor x = Tensor::zeros({1, 3, 16, 16});
  EXPECT_THROW(gaussian_blur(x, 4, 1.0), Error) << "even kernel";
  EXPECT_THROW(gaussian_blur(x, 0, 1.0), Error) << "empty kernel";
  EXPECT_THROW(gaussian_blur(x, 5, 0.0), Error) << "sigma 0";
  EXPECT_THROW(gaussian_blur(Tensor::zeros({3, 16, 16}), 5, 1.0), Error) << "3-D input";
  EXPECT_THROW(gaussian_blur(Tensor::zeros({1, 3, 16, 16}, DType::i32), 5, 1.0), Error) << "integer input";
  Tensor trained = Tensor::zeros({1, 3, 16, 16});
  trained.requires_grad_(true);
  EXPECT_THROW(high_pass(trained), Error) << "no backward";
  NoGradGuard no_grad;
  EXPECT_NO_THROW(high_pass(trained));
}

}  // namespace
}  // namespace engine::testing
