// transforms.h - the image transforms of MoCo v2's augmentation, with torchvision's semantics on
// PIL images (METHOD.md section 2), as pure functions.
//
// Sampling and applying are separate: sample_* draws a transform's parameters from a SampleRng
// (they depend on the image size only), apply functions take the parameters. Tests check each
// apply function against PIL on fixed parameters, and each sampler's distribution against
// torchvision's.
//
// Every apply function reproduces Pillow 9's integer arithmetic (uint8 in and out, the same
// rounding at every stage), so results equal PIL's exactly, not just approximately:
//   resize            Resample.c, antialiased triangle filter, 22-bit fixed point, horizontal first
//   brightness/contrast/saturation  Image.blend of a degenerate image, in float, truncated
//   hue               Pillow's 8-bit HSV, the shift wrapping mod 256 (METHOD.md O13)
//   grayscale         ITU-R 601-2 luma in 16-bit fixed point
//   gaussian_blur     BoxBlur.c: three extended box passes per axis, 24-bit fixed point
#pragma once

#include <array>
#include <cstdint>

#include "data/image.h"
#include "data/sample_rng.h"

namespace engine::data {

// A crop in image pixels: rows [top, top + height), columns [left, left + width).
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
  bool operator==(const CropBox&) const = default;
};

// ---- RandomResizedCrop (METHOD.md 2.2) ----
struct CropRange {
  double scale_min = 0.2, scale_max = 1.0;          // MoCo v2; torchvision's default is 0.08
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
};
// Ten tries of (area, log-uniform aspect) and torchvision's central fallback.
CropBox sample_resized_crop(int width, int height, const CropRange& range, SampleRng& rng);
// The fallback alone (what torchvision returns after ten failed tries).
CropBox fallback_crop(int width, int height, const CropRange& range);

// PIL Image.crop(box).resize((out_width, out_height), BILINEAR): the crop must lie inside `in`.
Image resized_crop(const Image& in, const CropBox& box, int out_width, int out_height);
Image resize(const Image& in, int out_width, int out_height);
// torchvision Resize(size) with an int: the shorter side becomes `size`, the longer
// int(size * long / short). The first gives the output's {width, height}.
std::array<int, 2> shorter_side_size(int width, int height, int size);
Image resize_shorter_side(const Image& in, int size);
// torchvision CenterCrop(size) of a width x height image (both at least `size`).
CropBox center_crop_box(int width, int height, int size);
Image crop(const Image& in, const CropBox& box);

// ---- ColorJitter (METHOD.md 2.4) ----
struct ColorJitterStrength {
  float brightness = 0.4f, contrast = 0.4f, saturation = 0.4f, hue = 0.1f;
};
struct ColorJitterParams {
  std::array<int, 4> order = {0, 1, 2, 3};  // 0 brightness, 1 contrast, 2 saturation, 3 hue
  float brightness = 1, contrast = 1, saturation = 1, hue = 0;
};
ColorJitterParams sample_color_jitter(const ColorJitterStrength& strength, SampleRng& rng);
void color_jitter(Image& image, const ColorJitterParams& params);
void adjust_brightness(Image& image, float factor);
void adjust_contrast(Image& image, float factor);
void adjust_saturation(Image& image, float factor);
void adjust_hue(Image& image, float hue_factor);  // in [-0.5, 0.5]

// ---- the rest of the base transform ----
uint8_t luma(uint8_t r, uint8_t g, uint8_t b);  // Pillow's RGB -> L
void to_grayscale(Image& image);                // (L, L, L)
void gaussian_blur(Image& image, float sigma);  // Pillow's GaussianBlur(radius=sigma)
void horizontal_flip(Image& image);

// Pillow's box radius for one of the three passes approximating a Gaussian of std `sigma`, and
// the fixed-point tap weights derived from it (METHOD.md 2.6, test vector 9).
struct BoxBlurPass {
  float radius;
  int inner;  // l, the integer part of the radius
  uint32_t inner_weight, edge_weight;
};
BoxBlurPass box_blur_pass(float sigma);

// ---- to the network's input ----
struct Normalization {
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};
// ToTensor then Normalize, in float32 as torchvision: ((x / 255) - mean) / std, written CHW into `out`.
void to_normalized_chw(const Image& image, const Normalization& norm, float* out);
// ToTensor without the division: the raw 0-255 values as float, CHW.
void to_chw_0_255(const Image& image, float* out);

}  // namespace engine::data
