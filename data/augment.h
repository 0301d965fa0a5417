// augment.h - the per-view pipelines built from transforms.h, and a sample's views from one decode.
//
// A pipeline is data (AugmentConfig), so MoCo v2's "aug-plus", MoCo v1's augmentation, the linear
// probe's training crops and the evaluation resize are presets of one struct rather than four code
// paths. A view's random choices are drawn first (ViewParams, from the image size and a SampleRng)
// and applied second, which lets the loader pick a reduced JPEG decode before decoding (--fast-decode)
// and lets `moco batch` report exactly what was drawn.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "data/transforms.h"

namespace engine::data {

struct AugmentConfig {
  int size = 224;  // output side
  // Random crop (RandomResizedCrop) or, when false, evaluation's Resize(resize_size) + CenterCrop(size).
  bool random_crop = true;
  CropRange crop;
  int resize_size = 256;
  double jitter_p = 0.8;  // 0: no colour jitter
  ColorJitterStrength jitter;
  double grayscale_p = 0.2;
  bool grayscale_before_jitter = false;  // MoCo v1's order: crop, grayscale, jitter, flip
  double blur_p = 0.5;
  float blur_sigma_min = 0.1f, blur_sigma_max = 2.0f;
  double flip_p = 0.5;
  bool normalize = true;  // false: raw 0-255 values (moco batch --no-augment)
  Normalization norm;
};

// MoCo v2 (--aug-plus): crop 0.2-1, jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur 0.5, flip.
AugmentConfig mocov2_augment(int size = 224);
// MoCo v1: crop 0.2-1, grayscale 0.2, jitter (0.4, 0.4, 0.4, 0.4) always, flip.
AugmentConfig mocov1_augment(int size = 224);
// Linear classification training: RandomResizedCrop (torchvision's 0.08-1) and flip.
AugmentConfig lincls_train_augment(int size = 224);
// Evaluation: Resize(size * 256 / 224, rounded) + CenterCrop(size).
AugmentConfig eval_transform(int size = 224);
// No augmentation, no normalisation: shorter side to `size`, center crop, values 0-255.
AugmentConfig plain_transform(int size = 224);

// What was drawn for one view. The box is in the pixels of the full-size decoded image.
struct ViewParams {
  CropBox box;
  bool jitter = false;
  ColorJitterParams jitter_params;
  bool grayscale = false;
  float blur_sigma = 0;  // 0: no blur
  bool flip = false;
};

ViewParams sample_view(const AugmentConfig& config, int width, int height, SampleRng& rng);

// The evaluation transform resizes the whole image before its center crop, so a very elongated one
// (1 x 100000 pixels at a shorter side of 256: 20 GB) could exhaust memory: throws DecodeError,
// naming `name`, when that resize would pass 2^26 pixels (a 16:1 panorama at 256 makes 1 M). The
// random crop cuts first and is never refused. make_views checks every file; callers that render
// images of their own check them with this.
void check_view_fits(const AugmentConfig& config, int width, int height, const std::string& name);

// The view drawn by `params` from `image`, written as 3 x size x size floats (CHW) into `out`.
// `reduce` > 1 says `image` was decoded at 1/reduce of the size the box refers to.
void render_view(const Image& image, const ViewParams& params, const AugmentConfig& config, int reduce, float* out);

// The largest JPEG DCT reduction (1, 2, 4 or 8) that still leaves every view's crop at least as large
// as its output (so the resize only ever shrinks). Only used under --fast-decode.
int fast_decode_reduction(const AugmentConfig& config, int width, int height, std::span<const ViewParams> views);

// One sample's views: decodes `bytes` once, draws the views from SampleRng(seed, epoch, index) and
// writes view v to outs[v]. Throws DecodeError when the file cannot be decoded.
struct SampleViews {
  std::vector<ViewParams> views;
  int reduce = 1;  // the DCT reduction used
};
SampleViews make_views(std::span<const uint8_t> bytes, const std::string& name, const AugmentConfig& config,
                       int num_views, bool fast_decode, SampleRng& rng, std::span<float* const> outs);

}  // namespace engine::data
