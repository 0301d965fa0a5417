// test_transforms.cpp - each transform against PIL/torchvision: the test vectors of METHOD.md 12.2
// and the fixtures of tools/make_data_fixtures.py. The apply functions follow Pillow's integer
// arithmetic, so the expected tolerance is zero: every sample equal.
#include <gtest/gtest.h>

#include <cmath>

#include "data/transforms.h"
#include "pil_fixtures.h"

namespace engine::data {
namespace {

using testing::max_abs_diff;
using testing::pil_reference;
using testing::reference_image;

Image rgb_pixels(std::initializer_list<std::array<uint8_t, 3>> pixels) {
  Image image(static_cast<int>(pixels.size()), 1, 3);
  int x = 0;
  for (const auto& p : pixels) {
    for (int c = 0; c < 3; ++c) image.at(x, 0, c) = p[c];
    ++x;
  }
  return image;
}

std::array<int, 3> pixel(const Image& image, int x) { return {image.at(x, 0, 0), image.at(x, 0, 1), image.at(x, 0, 2)}; }

std::vector<float> floats(const std::string& name) { return pil_reference().at(name).to_vector<float>(); }

// ---- METHOD.md 12.2 ----

TEST(PilTransforms, LumaMatchesSpecVectors) {
  EXPECT_EQ(luma(255, 0, 0), 76);
  EXPECT_EQ(luma(0, 255, 0), 150);
  EXPECT_EQ(luma(0, 0, 255), 29);
  EXPECT_EQ(luma(10, 200, 30), 124);
}

TEST(PilTransforms, BoxBlurRadiiAndWeightsMatchSpecVectors) {
  struct Case {
    float sigma, radius;
    int inner;
    uint32_t ww, fw;
  };
  // METHOD.md's source lists ww = 11184810, fw = 2796203 for sigma 1.0, the values of a double-precision
  // division; Pillow divides in float (16777216f / 1.5f rounds up), giving 11184811 and 2796202.
  // The next test shows Pillow 9.4 producing the float result where the two differ.
  for (const Case& c : {Case{0.1f, 0.001672f, 0, 16721291, 27962}, Case{1.0f, 0.25f, 0, 11184811, 2796202},
                        Case{1.5f, 1.038462f, 1, 5452595, 209715}, Case{2.0f, 1.375f, 1, 4473924, 1677722}}) {
    const BoxBlurPass pass = box_blur_pass(c.sigma);
    EXPECT_NEAR(pass.radius, c.radius, 1e-6) << "sigma " << c.sigma;
    EXPECT_EQ(pass.inner, c.inner) << "sigma " << c.sigma;
    EXPECT_EQ(pass.inner_weight, c.ww) << "sigma " << c.sigma;
    EXPECT_EQ(pass.edge_weight, c.fw) << "sigma " << c.sigma;
  }
}

TEST(PilTransforms, BlurWeightsAreFloatDividedAsPillowDoes) {
  // A row where float and double weights disagree; Pillow 9.4.0's output, (1-pixel high "L" image).
  const uint8_t row[8] = {68, 32, 130, 60, 253, 230, 241, 194};
  const int pillow[8] = {61, 68, 93, 130, 193, 226, 224, 210};  // double weights would give 94, 131
  Image image(8, 1, 1);
  std::copy(row, row + 8, image.pixels.begin());
  gaussian_blur(image, 1.0f);
  for (int x = 0; x < 8; ++x) EXPECT_EQ(image.at(x, 0), pillow[x]) << "x " << x;
}

TEST(PilTransforms, BlurOfAnImpulseIsPillowsAsymmetricResponse) {
  Image image(15, 15, 3);
  for (int c = 0; c < 3; ++c) image.at(7, 7, c) = 255;
  gaussian_blur(image, 1.0f);
  const int row7[15] = {0, 0, 0, 0, 1, 6, 24, 42, 24, 6, 1, 0, 0, 0, 0};
  const int col7[15] = {0, 0, 0, 0, 0, 6, 24, 42, 24, 6, 0, 0, 0, 0, 0};
  for (int i = 0; i < 15; ++i) {
    EXPECT_EQ(image.at(i, 7, 0), row7[i]) << "row 7, column " << i;
    EXPECT_EQ(image.at(7, i, 0), col7[i]) << "column 7, row " << i;
  }
}

TEST(PilTransforms, BlurOfAStepMatchesSpecVector) {
  Image image(16, 3, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 8; x < 16; ++x)
      for (int c = 0; c < 3; ++c) image.at(x, y, c) = 200;
  gaussian_blur(image, 2.0f);
  const int expected[16] = {0, 0, 0, 2, 8, 22, 47, 81, 119, 153, 178, 192, 198, 200, 200, 200};
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 16; ++x) EXPECT_EQ(image.at(x, y, 1), expected[x]) << "x " << x << " y " << y;
}

TEST(PilTransforms, HueShiftsMatchSpecVectors) {
  const Image source = rgb_pixels({{200, 100, 50}, {10, 200, 30}});
  struct Case {
    float factor;
    std::array<int, 3> first, second;
  };
  for (const Case& c : {Case{0.1f, {200, 188, 50}, {10, 200, 140}}, Case{-0.1f, {200, 50, 85}, {104, 200, 10}},
                        Case{0.05f, {200, 142, 50}, {10, 200, 82}}}) {
    Image image = source;
    adjust_hue(image, c.factor);
    EXPECT_EQ(pixel(image, 0), c.first) << "hue " << c.factor;
    EXPECT_EQ(pixel(image, 1), c.second) << "hue " << c.factor;
  }
}

TEST(PilTransforms, BrightnessMatchesSpecVectors) {
  Image bright = rgb_pixels({{200, 100, 50}, {10, 200, 30}});
  Image dark = bright;
  adjust_brightness(bright, 1.3f);
  adjust_brightness(dark, 0.7f);
  EXPECT_EQ(pixel(bright, 0), (std::array<int, 3>{255, 130, 65}));
  EXPECT_EQ(pixel(bright, 1), (std::array<int, 3>{13, 255, 39}));
  EXPECT_EQ(pixel(dark, 0), (std::array<int, 3>{140, 70, 35}));
  EXPECT_EQ(pixel(dark, 1), (std::array<int, 3>{7, 140, 21}));
}

TEST(PilTransforms, ResizedCropFallbackMatchesSpecVector) {
  EXPECT_EQ(fallback_crop(500, 100, CropRange{}), (CropBox{0, 183, 100, 133}));
}

// ---- against the PIL fixtures, exactly ----

TEST(PilTransforms, ResizedCropEqualsPil) {
  const Image src = reference_image("src");
  const std::vector<int32_t> cases = pil_reference().at("resized_crop_cases").to_vector<int32_t>();
  ASSERT_EQ(cases.size() % 6, 0u);
  for (size_t i = 0; i < cases.size() / 6; ++i) {
    const int32_t* c = &cases[i * 6];
    const Image ours = resized_crop(src, {c[0], c[1], c[2], c[3]}, c[4], c[5]);
    EXPECT_EQ(max_abs_diff(ours, reference_image("resized_crop_" + std::to_string(i))), 0)
        << "box (top " << c[0] << ", left " << c[1] << ", " << c[2] << "x" << c[3] << ") to " << c[4] << "x" << c[5];
  }
}

TEST(PilTransforms, ResizeShorterSideAndCenterCropEqualTorchvision) {
  const Image src = reference_image("src");
  const Image resized = resize_shorter_side(src, 30);
  EXPECT_EQ(max_abs_diff(resized, reference_image("resize_shorter_30")), 0);
  EXPECT_EQ(max_abs_diff(crop(resized, center_crop_box(resized.width, resized.height, 30)),
                         reference_image("center_crop_30")), 0);
  EXPECT_EQ(max_abs_diff(resize_shorter_side(src, 100), reference_image("resize_shorter_100")), 0);
}

void expect_adjustment_equals_pil(const std::string& op, void (*adjust)(Image&, float)) {
  const Image src = reference_image("src");
  const std::vector<float> factors = floats(op + "_factors");
  ASSERT_FALSE(factors.empty());
  for (size_t i = 0; i < factors.size(); ++i) {
    Image ours = src;
    adjust(ours, factors[i]);
    EXPECT_EQ(max_abs_diff(ours, reference_image(op + "_" + std::to_string(i))), 0) << op << " " << factors[i];
  }
}

TEST(PilTransforms, BrightnessEqualsPil) { expect_adjustment_equals_pil("brightness", adjust_brightness); }
TEST(PilTransforms, ContrastEqualsPil) { expect_adjustment_equals_pil("contrast", adjust_contrast); }
TEST(PilTransforms, SaturationEqualsPil) { expect_adjustment_equals_pil("saturation", adjust_saturation); }
TEST(PilTransforms, HueEqualsPil) { expect_adjustment_equals_pil("hue", adjust_hue); }

TEST(PilTransforms, GrayscaleAndFlipEqualTorchvision) {
  Image gray = reference_image("src");
  to_grayscale(gray);
  EXPECT_EQ(max_abs_diff(gray, reference_image("grayscale")), 0);
  Image flipped = reference_image("src");
  horizontal_flip(flipped);
  EXPECT_EQ(max_abs_diff(flipped, reference_image("hflip")), 0);
}

TEST(PilTransforms, GaussianBlurEqualsPil) {
  const std::vector<float> sigmas = floats("blur_sigmas");
  ASSERT_FALSE(sigmas.empty());
  for (size_t i = 0; i < sigmas.size(); ++i) {
    Image ours = reference_image("src");
    gaussian_blur(ours, sigmas[i]);
    EXPECT_EQ(max_abs_diff(ours, reference_image("blur_" + std::to_string(i))), 0) << "sigma " << sigmas[i];
  }
}

TEST(PilTransforms, ColorJitterInAGivenOrderEqualsTorchvision) {
  const std::vector<int32_t> order = pil_reference().at("jitter_order").to_vector<int32_t>();
  const std::vector<float> f = floats("jitter_factors");
  ColorJitterParams params;
  for (int i = 0; i < 4; ++i) params.order[i] = order[i];
  params.brightness = f[0], params.contrast = f[1], params.saturation = f[2], params.hue = f[3];
  Image ours = reference_image("src");
  color_jitter(ours, params);
  EXPECT_EQ(max_abs_diff(ours, reference_image("jitter_composite")), 0);
}

TEST(PilTransforms, NormalizedTensorEqualsTorchvisionBitForBit) {
  const Image src = reference_image("src");
  std::vector<float> ours(3 * src.width * src.height);
  to_normalized_chw(src, Normalization{}, ours.data());
  const std::vector<float> expected = floats("normalized");
  ASSERT_EQ(ours.size(), expected.size());
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i], expected[i]) << "element " << i;
}

// ---- RandomResizedCrop's sampler against torchvision's distribution ----

struct CropStats {
  double mean_w = 0, mean_h = 0, std_w = 0, std_h = 0, mean_top = 0, mean_left = 0, fallback = 0, area = 0;
};

CropStats our_crop_stats(int W, int H, int draws) {
  CropStats s;
  const CropBox fallback = fallback_crop(W, H, CropRange{});
  double sw = 0, sh = 0;
  for (int i = 0; i < draws; ++i) {
    SampleRng rng(7, 0, static_cast<uint64_t>(i));
    const CropBox b = sample_resized_crop(W, H, CropRange{}, rng);
    EXPECT_TRUE(b.top >= 0 && b.left >= 0 && b.top + b.height <= H && b.left + b.width <= W) << "box outside";
    s.mean_w += b.width, s.mean_h += b.height, sw += double(b.width) * b.width, sh += double(b.height) * b.height;
    s.mean_top += b.top, s.mean_left += b.left, s.fallback += b == fallback, s.area += double(b.width) * b.height / (W * H);
  }
  for (double* v : {&s.mean_w, &s.mean_h, &s.mean_top, &s.mean_left, &s.fallback, &s.area}) *v /= draws;
  s.std_w = std::sqrt(sw / draws - s.mean_w * s.mean_w);
  s.std_h = std::sqrt(sh / draws - s.mean_h * s.mean_h);
  return s;
}

TEST(PilTransforms, ResizedCropSamplerMatchesTorchvisionDistribution) {
  // 20000 draws each side: the standard error of a mean is about 0.7% of the image side, so 3% of
  // the side (and 0.01 of the fallback rate) separates a real difference from noise.
  for (auto [W, H] : {std::pair{500, 375}, std::pair{100, 500}, std::pair{500, 100}, std::pair{64, 64}}) {
    const std::string size = std::to_string(W) + "x" + std::to_string(H);
    const std::vector<double> ref = pil_reference().at("rrc_stats_" + size).to_vector<double>();
    const CropStats ours = our_crop_stats(W, H, 20000);
    EXPECT_NEAR(ours.mean_w, ref[0], 0.03 * W) << size;
    EXPECT_NEAR(ours.mean_h, ref[1], 0.03 * H) << size;
    EXPECT_NEAR(ours.std_w, ref[2], 0.03 * W) << size;
    EXPECT_NEAR(ours.std_h, ref[3], 0.03 * H) << size;
    EXPECT_NEAR(ours.mean_top, ref[4], 0.03 * H) << size;
    EXPECT_NEAR(ours.mean_left, ref[5], 0.03 * W) << size;
    EXPECT_NEAR(ours.fallback, ref[6], 0.01) << size;
    EXPECT_NEAR(ours.area, ref[7], 0.01) << size;
    const std::vector<int32_t> fb = pil_reference().at("rrc_fallback_" + size).to_vector<int32_t>();
    EXPECT_EQ(fallback_crop(W, H, CropRange{}), (CropBox{fb[0], fb[1], fb[2], fb[3]})) << size;
  }
}

}  // namespace
}  // namespace engine::data
