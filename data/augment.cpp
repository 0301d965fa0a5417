// augment.cpp - see augment.h.
#include "data/augment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "data/codec.h"
#include "engine/check.h"

namespace engine::data {

AugmentConfig mocov2_augment(int size) {
  AugmentConfig c;
  c.size = size;
  return c;
}

AugmentConfig mocov1_augment(int size) {
  AugmentConfig c;
  c.size = size;
  c.jitter_p = 1.0;
  c.jitter = {0.4f, 0.4f, 0.4f, 0.4f};
  c.grayscale_before_jitter = true;
  c.blur_p = 0;
  return c;
}

AugmentConfig lincls_train_augment(int size) {
  AugmentConfig c;
  c.size = size;
  c.crop.scale_min = 0.08;
  c.jitter_p = 0;
  c.grayscale_p = 0;
  c.blur_p = 0;
  return c;
}

AugmentConfig eval_transform(int size) {
  AugmentConfig c = lincls_train_augment(size);
  c.random_crop = false;
  c.resize_size = static_cast<int>(std::lround(size * 256.0 / 224.0));
  c.flip_p = 0;
  return c;
}

AugmentConfig plain_transform(int size) {
  AugmentConfig c = eval_transform(size);
  c.resize_size = size;
  c.normalize = false;
  return c;
}

namespace {

// The evaluation crop expressed in the decoded image's pixels (for reporting): the center crop of
// the resized image scaled back.
CropBox eval_box(const AugmentConfig& config, int width, int height) {
  const auto [rw, rh] = shorter_side_size(width, height, config.resize_size);
  const CropBox c = center_crop_box(rw, rh, config.size);
  const double sx = static_cast<double>(width) / rw, sy = static_cast<double>(height) / rh;
  return {static_cast<int>(std::lround(c.top * sy)), static_cast<int>(std::lround(c.left * sx)),
          static_cast<int>(std::lround(c.height * sy)), static_cast<int>(std::lround(c.width * sx))};
}

// A box of the full-size image in the pixels of the image decoded at 1/reduce (ceil-sized).
CropBox reduce_box(const CropBox& b, int reduce, int reduced_width, int reduced_height) {
  if (reduce == 1) return b;
  const int top = b.top / reduce, left = b.left / reduce;
  const int bottom = std::min(reduced_height, (b.top + b.height + reduce - 1) / reduce);
  const int right = std::min(reduced_width, (b.left + b.width + reduce - 1) / reduce);
  return {top, left, bottom - top, right - left};
}

}  // namespace

ViewParams sample_view(const AugmentConfig& config, int width, int height, SampleRng& rng) {
  ViewParams v;
  if (!config.random_crop) {
    v.box = eval_box(config, width, height);
    v.flip = config.flip_p > 0 && rng.bernoulli(config.flip_p);
    return v;
  }
  v.box = sample_resized_crop(width, height, config.crop, rng);
  auto draw_grayscale = [&] { v.grayscale = config.grayscale_p > 0 && rng.bernoulli(config.grayscale_p); };
  if (config.grayscale_before_jitter) draw_grayscale();
  if (config.jitter_p > 0) {
    // RandomApply draws its coin first; the jitter draws its parameters only when applied.
    v.jitter = config.jitter_p >= 1.0 || rng.uniform() <= config.jitter_p;
    if (v.jitter) v.jitter_params = sample_color_jitter(config.jitter, rng);
  }
  if (!config.grayscale_before_jitter) draw_grayscale();
  if (config.blur_p > 0 && rng.uniform() <= config.blur_p)
    v.blur_sigma = static_cast<float>(rng.uniform(config.blur_sigma_min, config.blur_sigma_max));
  v.flip = config.flip_p > 0 && rng.bernoulli(config.flip_p);
  return v;
}

void render_view(const Image& image, const ViewParams& params, const AugmentConfig& config, int reduce, float* out) {
  Image view;
  if (config.random_crop) {
    view = resized_crop(image, reduce_box(params.box, reduce, image.width, image.height), config.size, config.size);
  } else {
    const Image resized = resize_shorter_side(image, config.resize_size);
    view = crop(resized, center_crop_box(resized.width, resized.height, config.size));
  }
  if (config.grayscale_before_jitter && params.grayscale) to_grayscale(view);
  if (params.jitter) color_jitter(view, params.jitter_params);
  if (!config.grayscale_before_jitter && params.grayscale) to_grayscale(view);
  if (params.blur_sigma > 0) gaussian_blur(view, params.blur_sigma);
  if (params.flip) horizontal_flip(view);
  if (config.normalize) {
    to_normalized_chw(view, config.norm, out);
  } else {
    to_chw_0_255(view, out);
  }
}

int fast_decode_reduction(const AugmentConfig& config, int width, int height, std::span<const ViewParams> views) {
  for (int reduce : {8, 4, 2}) {
    bool fits = true;
    if (!config.random_crop) {
      fits = std::min(width, height) / reduce >= config.resize_size;
    } else {
      for (const ViewParams& v : views)
        fits = fits && v.box.width / reduce >= config.size && v.box.height / reduce >= config.size;
    }
    if (fits) return reduce;
  }
  return 1;
}

void check_view_fits(const AugmentConfig& config, int width, int height, const std::string& name) {
  if (config.random_crop) return;
  constexpr double kMaxResizedPixels = double(1 << 26);
  const double short_side = std::min(width, height), long_side = std::max(width, height);
  const double resized_long = config.resize_size * long_side / short_side;
  if (resized_long * config.resize_size > kMaxResizedPixels)
    throw DecodeError(fmt::format("{}: {}x{} is too elongated: Resize({}) of its shorter side would make a {:.0f}-pixel "
                                  "long side; crop it first",
                                  name, width, height, config.resize_size, resized_long));
}

SampleViews make_views(std::span<const uint8_t> bytes, const std::string& name, const AugmentConfig& config,
                       int num_views, bool fast_decode, SampleRng& rng, std::span<float* const> outs) {
  ENGINE_CHECK(static_cast<int>(outs.size()) == num_views, "make_views: {} views but {} outputs", num_views,
               outs.size());
  SampleViews s;
  const ImageHeader header = read_image_header(bytes, name);
  check_view_fits(config, header.width, header.height, name);
  for (int v = 0; v < num_views; ++v) s.views.push_back(sample_view(config, header.width, header.height, rng));
  if (fast_decode && header.is_jpeg) s.reduce = fast_decode_reduction(config, header.width, header.height, s.views);
  const Image image = decode_image(bytes, name, s.reduce);
  for (int v = 0; v < num_views; ++v) render_view(image, s.views[v], config, s.reduce, outs[v]);
  return s;
}

}  // namespace engine::data
