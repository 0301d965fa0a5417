// transforms.cpp - PIL-exact image transforms; see transforms.h for what each follows.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/check.h"

namespace engine::data {

namespace {

uint8_t clamp_u8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }
int python_round(double v) { return static_cast<int>(std::nearbyint(v)); }  // half to even

// ---- PIL's resampling (Resample.c) ----
constexpr int kResampleBits = 22;  // 32 - 8 - 2: room for the sum of 8-bit samples times weights

// The taps of one axis: output x reads inputs [first[x], first[x] + count[x]) with integer weights.
struct AxisTaps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size * ksize
};

// Triangle filter of support 1, widened by the scale when downsampling (antialiasing).
AxisTaps axis_taps(int in_size, int out_size) {
  AxisTaps taps;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;
  taps.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.ksize, 0);
  std::vector<double> w(taps.ksize);
  for (int x = 0; x < out_size; ++x) {
    const double center = (x + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int hi = std::min(in_size, static_cast<int>(center + support + 0.5));
    double total = 0;
    for (int j = 0; j < hi - lo; ++j) {
      const double t = std::fabs((j + lo - center + 0.5) / filter_scale);
      w[j] = t < 1.0 ? 1.0 - t : 0.0;
      total += w[j];
    }
    for (int j = 0; j < hi - lo; ++j) {
      const double normalized = total != 0.0 ? w[j] / total : w[j];
      const double fixed = normalized * (1 << kResampleBits);
      taps.weights[static_cast<size_t>(x) * taps.ksize + j] = static_cast<int32_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    taps.first[x] = lo;
    taps.count[x] = hi - lo;
  }
  return taps;
}

uint8_t resample_clip(int32_t acc) { return clamp_u8(acc >> kResampleBits); }

// Horizontal pass over rows [row0, row0 + rows) of `in`, columns offset by `col0`.
template <int C>
void resample_rows_of(const Image& in, int row0, int col0, const AxisTaps& taps, Image& out) {
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.row(row0 + y) + static_cast<size_t>(col0) * C;
    uint8_t* dst = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      const int32_t* k = &taps.weights[static_cast<size_t>(x) * taps.ksize];
      const uint8_t* s = src + static_cast<size_t>(taps.first[x]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = 1 << (kResampleBits - 1);
      for (int j = 0; j < taps.count[x]; ++j)
        for (int c = 0; c < C; ++c) acc[c] += s[j * C + c] * k[j];
      for (int c = 0; c < C; ++c) dst[x * C + c] = resample_clip(acc[c]);
    }
  }
}

Image resample_rows(const Image& in, int row0, int rows, int col0, const AxisTaps& taps, int out_width) {
  Image out(out_width, rows, in.channels);
  switch (in.channels) {
    case 1: resample_rows_of<1>(in, row0, col0, taps, out); break;
    case 3: resample_rows_of<3>(in, row0, col0, taps, out); break;
    default: ENGINE_THROW("resize: expected 1 or 3 channels, found {}", in.channels);
  }
  return out;
}

// Vertical pass: output row y mixes input rows first[y] - row_shift ... of `in` (columns col0..).
Image resample_columns(const Image& in, int row_shift, int col0, int width, const AxisTaps& taps, int out_height) {
  Image out(width, out_height, in.channels);
  const int C = in.channels;
  const size_t n = static_cast<size_t>(width) * C;
  std::vector<int32_t> acc(n);
  for (int y = 0; y < out_height; ++y) {
    std::fill(acc.begin(), acc.end(), 1 << (kResampleBits - 1));
    const int32_t* k = &taps.weights[static_cast<size_t>(y) * taps.ksize];
    for (int j = 0; j < taps.count[y]; ++j) {
      const uint8_t* src = in.row(taps.first[y] - row_shift + j) + static_cast<size_t>(col0) * C;
      const int32_t w = k[j];
      for (size_t i = 0; i < n; ++i) acc[i] += src[i] * w;
    }
    uint8_t* dst = out.row(y);
    for (size_t i = 0; i < n; ++i) dst[i] = resample_clip(acc[i]);
  }
  return out;
}

// ---- blends (Pillow's ImagingBlend of a degenerate image and the image) ----
uint8_t blend(uint8_t degenerate, uint8_t value, float factor) {
  const float v = static_cast<float>(degenerate) + factor * static_cast<float>(static_cast<int>(value) - degenerate);
  if (factor >= 0.0f && factor <= 1.0f) return static_cast<uint8_t>(v);
  if (v <= 0.0f) return 0;
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);
}

void check_rgb(const Image& image, const char* op) {
  ENGINE_CHECK(image.channels == 3, "{}: expected an RGB image (3 channels), found {} channels", op, image.channels);
}

// Pillow's rgb2hsv_row and hsv2rgb, with their float/double mix kept as is, made fast by tables:
// H depends only on which channel is the largest and on the two differences (max - other), S only
// on (max - min, max), and the HSV -> RGB factors on per-H and per-S values. Each entry is computed by
// Pillow's own arithmetic, so the result is still bit-exact.
int round_half_away(double x) {  // C round() for the non-negative values here, without libm or a branch
  const int t = static_cast<int>(x);
  return t + static_cast<int>(x - t >= 0.5);
}

struct HsvTables {
  uint8_t hue[3][256 * 256];  // [largest channel r/g/b][(max - first other) * 256 + (max - second other)]
  uint8_t saturation[256 * 256];  // [(max - min) * 256 + max]
  // hsv2rgb's per-H sector i % 6 and fraction f, and per-S fs = S / 255, as Pillow computes them.
  int sector[256];
  float fraction[256], fs[256];

  HsvTables() {
    for (int d1 = 0; d1 < 256; ++d1)
      for (int d2 = 0; d2 < 256; ++d2) {
        const int cr_int = std::max(d1, d2);
        for (int which = 0; which < 3; ++which) {
          if (cr_int == 0) {
            hue[which][d1 * 256 + d2] = 0;
            continue;
          }
          const float cr = static_cast<float>(cr_int);
          const float a = static_cast<float>(d1) / cr, b = static_cast<float>(d2) / cr;
          float h;
          if (which == 0) h = b - a;                               // r max: bc - gc, (d1, d2) = (max-g, max-b)
          else if (which == 1) h = static_cast<float>(2.0 + a - b);  // g max: 2 + rc - bc, (max-r, max-b)
          else h = static_cast<float>(4.0 + a - b);                  // b max: 4 + gc - rc, (max-g, max-r)
          h = static_cast<float>(std::fmod(h / 6.0 + 1.0, 1.0));
          hue[which][d1 * 256 + d2] = clamp_u8(static_cast<int>(h * 255.0));
        }
        if (d1 <= d2 && d2 > 0) {  // d1 = max - min, d2 = max
          const float s = static_cast<float>(d1) / static_cast<float>(d2);
          saturation[d1 * 256 + d2] = clamp_u8(static_cast<int>(s * 255.0));
        }
      }
    for (int h = 0; h < 256; ++h) {
      const int i = static_cast<int>(std::floor(static_cast<float>(h) * 6.0 / 255.0));
      sector[h] = i % 6;
      fraction[h] = static_cast<float>(static_cast<float>(h) * 6.0 / 255.0 - static_cast<float>(i));
      fs[h] = static_cast<float>(static_cast<float>(h) / 255.0);
    }
  }
};

const HsvTables& hsv_tables() {
  static const HsvTables tables;
  return tables;
}

void rgb_to_hsv(const HsvTables& tables, const uint8_t* rgb, uint8_t* hsv) {
  const uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
  const uint8_t maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  hsv[2] = maxc;
  if (minc == maxc) {
    hsv[0] = hsv[1] = 0;
    return;
  }
  if (r == maxc) hsv[0] = tables.hue[0][(maxc - g) * 256 + (maxc - b)];
  else if (g == maxc) hsv[0] = tables.hue[1][(maxc - r) * 256 + (maxc - b)];
  else hsv[0] = tables.hue[2][(maxc - g) * 256 + (maxc - r)];
  hsv[1] = tables.saturation[(maxc - minc) * 256 + maxc];
}

void hsv_to_rgb(const HsvTables& tables, const uint8_t* hsv, uint8_t* rgb) {
  const uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  // Pillow: p = round(V (1 - fs)), q = round(V (1 - fs f)), t = round(V (1 - fs (1 - f))); fs f is a
  // float product, the rest double. The sector then picks the order of (V, p, q, t), by table rather
  // than by branch: colours in a photo change sector unpredictably.
  static constexpr uint8_t kOrder[6][3] = {{0, 3, 1}, {2, 0, 1}, {1, 0, 3}, {1, 2, 0}, {3, 1, 0}, {0, 1, 2}};
  const float f = tables.fraction[h], fs = tables.fs[s];
  const double fv = static_cast<float>(v);
  const uint8_t values[4] = {v, clamp_u8(round_half_away(fv * (1.0 - fs))), clamp_u8(round_half_away(fv * (1.0 - fs * f))),
                             clamp_u8(round_half_away(fv * (1.0 - fs * (1.0 - f))))};
  const uint8_t* order = kOrder[tables.sector[h]];
  rgb[0] = values[order[0]];
  rgb[1] = values[order[1]];
  rgb[2] = values[order[2]];
}

// One extended-box pass along a line (BoxBlur.c): out[x] = (ww * sum_{|d|<=l} in[x+d] +
// fw * (in[x-l-1] + in[x+l+1]) + 2^23) >> 24, indices clamped to the line (edge replication).
uint8_t box_blur_value(uint32_t window, uint32_t far, const BoxBlurPass& pass) {
  return static_cast<uint8_t>((window * pass.inner_weight + far * pass.edge_weight + (1u << 23)) >> 24);
}

// Horizontal: each row is copied with l + 1 replicated pixels on each side, then one sweep keeps a
// running window per channel.
template <int C>
void box_blur_rows(Image& image, const BoxBlurPass& pass, std::vector<uint32_t>& padded) {
  const int n = image.width, l = pass.inner, pad = l + 1;
  padded.resize(static_cast<size_t>(n + 2 * pad) * C);
  for (int y = 0; y < image.height; ++y) {
    uint8_t* row = image.row(y);
    for (int i = 0; i < pad; ++i)
      for (int c = 0; c < C; ++c) {
        padded[i * C + c] = row[c];
        padded[(n + pad + i) * C + c] = row[(n - 1) * C + c];
      }
    for (int i = 0; i < n * C; ++i) padded[pad * C + i] = row[i];
    const uint32_t* in = padded.data() + static_cast<size_t>(pad) * C;  // in[x * C + c]: pixel x
    uint32_t window[C] = {};
    for (int d = -l; d <= l; ++d)
      for (int c = 0; c < C; ++c) window[c] += in[d * C + c];
    for (int x = 0; x < n; ++x)
      for (int c = 0; c < C; ++c) {
        const uint32_t entering = in[(x + l + 1) * C + c];
        row[x * C + c] = box_blur_value(window[c], in[(x - l - 1) * C + c] + entering, pass);
        window[c] += entering - in[(x - l) * C + c];
      }
  }
}

// Vertical: the same sums kept for every column at once, sliding down the rows, so memory is read
// row by row (Pillow transposes instead; the arithmetic is the same). Reads `in`, writes `out`.
void box_blur_columns(const Image& in, Image& out, const BoxBlurPass& pass, std::vector<uint32_t>& window) {
  const int n = in.height, l = pass.inner;
  const size_t width = in.row_bytes();
  auto row = [&](int y) { return in.row(std::clamp(y, 0, n - 1)); };
  window.assign(width, 0);
  for (int d = -l; d <= l; ++d) {
    const uint8_t* r = row(d);
    for (size_t i = 0; i < width; ++i) window[i] += r[i];
  }
  for (int y = 0; y < n; ++y) {
    const uint8_t *above = row(y - l - 1), *below = row(y + l + 1), *leaving = row(y - l);
    uint8_t* dst = out.row(y);
    for (size_t i = 0; i < width; ++i) {
      dst[i] = box_blur_value(window[i], static_cast<uint32_t>(above[i]) + below[i], pass);
      window[i] += static_cast<uint32_t>(below[i]) - leaving[i];
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- crops and resizing

CropBox fallback_crop(int width, int height, const CropRange& range) {
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < range.ratio_min) {
    h = python_round(w / range.ratio_min);
  } else if (in_ratio > range.ratio_max) {
    w = python_round(h * range.ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

CropBox sample_resized_crop(int width, int height, const CropRange& range, SampleRng& rng) {
  const double area = static_cast<double>(width) * height;
  const double log_min = std::log(range.ratio_min), log_max = std::log(range.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(range.scale_min, range.scale_max);
    const double aspect = std::exp(rng.uniform(log_min, log_max));
    const int w = python_round(std::sqrt(target_area * aspect));
    const int h = python_round(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const int top = static_cast<int>(rng.randint(0, height - h));
      const int left = static_cast<int>(rng.randint(0, width - w));
      return {top, left, h, w};
    }
  }
  return fallback_crop(width, height, range);
}

Image resized_crop(const Image& in, const CropBox& box, int out_width, int out_height) {
  ENGINE_CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 && box.top + box.height <= in.height &&
                   box.left + box.width <= in.width,
               "resized_crop: box (top {}, left {}, height {}, width {}) is not inside the {}x{} image", box.top,
               box.left, box.height, box.width, in.width, in.height);
  ENGINE_CHECK(out_width > 0 && out_height > 0, "resized_crop: output size must be positive, found {}x{}", out_width,
               out_height);
  const bool horizontal = out_width != box.width, vertical = out_height != box.height;
  if (!horizontal && !vertical) return crop(in, box);
  if (!vertical) return resample_rows(in, box.top, box.height, box.left, axis_taps(box.width, out_width), out_width);
  const AxisTaps rows = axis_taps(box.height, out_height);
  if (!horizontal) return resample_columns(in, -box.top, box.left, box.width, rows, out_height);
  // Like Pillow, the horizontal pass covers only the rows the vertical pass will read.
  const int first = rows.first.front(), last = rows.first.back() + rows.count.back();
  const Image tmp = resample_rows(in, box.top + first, last - first, box.left, axis_taps(box.width, out_width), out_width);
  return resample_columns(tmp, first, 0, out_width, rows, out_height);
}

Image resize(const Image& in, int out_width, int out_height) {
  return resized_crop(in, {0, 0, in.height, in.width}, out_width, out_height);
}

std::array<int, 2> shorter_side_size(int width, int height, int size) {
  const bool wide = width >= height;
  const int short_side = wide ? height : width, long_side = wide ? width : height;
  const int new_long = static_cast<int>(static_cast<int64_t>(size) * long_side / short_side);
  return wide ? std::array<int, 2>{new_long, size} : std::array<int, 2>{size, new_long};
}

Image resize_shorter_side(const Image& in, int size) {
  const auto [width, height] = shorter_side_size(in.width, in.height, size);
  return resize(in, width, height);
}

CropBox center_crop_box(int width, int height, int size) {
  ENGINE_CHECK(width >= size && height >= size, "center_crop_box: a {}x{} crop does not fit a {}x{} image", size, size,
               width, height);
  return {python_round((height - size) / 2.0), python_round((width - size) / 2.0), size, size};
}

Image crop(const Image& in, const CropBox& box) {
  Image out(box.width, box.height, in.channels);
  for (int y = 0; y < box.height; ++y)
    std::memcpy(out.row(y), in.row(box.top + y) + static_cast<size_t>(box.left) * in.channels, out.row_bytes());
  return out;
}

// ---------------------------------------------------------------- colour

uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

ColorJitterParams sample_color_jitter(const ColorJitterStrength& strength, SampleRng& rng) {
  ColorJitterParams p;
  for (int i = 3; i > 0; --i) std::swap(p.order[i], p.order[rng.randint(0, i)]);  // Fisher-Yates
  auto factor = [&](float s) { return static_cast<float>(rng.uniform(std::max(0.0f, 1 - s), 1 + s)); };
  p.brightness = factor(strength.brightness);
  p.contrast = factor(strength.contrast);
  p.saturation = factor(strength.saturation);
  p.hue = static_cast<float>(rng.uniform(-strength.hue, strength.hue));
  return p;
}

void color_jitter(Image& image, const ColorJitterParams& params) {
  for (int step : params.order) {
    switch (step) {
      case 0: adjust_brightness(image, params.brightness); break;
      case 1: adjust_contrast(image, params.contrast); break;
      case 2: adjust_saturation(image, params.saturation); break;
      default: adjust_hue(image, params.hue); break;
    }
  }
}

void adjust_brightness(Image& image, float factor) {
  if (factor == 1.0f) return;
  for (uint8_t& v : image.pixels) v = factor == 0.0f ? 0 : blend(0, v, factor);
}

void adjust_contrast(Image& image, float factor) {
  check_rgb(image, "adjust_contrast");
  if (factor == 1.0f) return;
  // ImageEnhance.Contrast: a flat gray of the rounded mean luma, the mean taken as ImageStat does.
  int64_t sum = 0;
  const size_t n = static_cast<size_t>(image.width) * image.height;
  for (size_t p = 0; p < n; ++p) sum += luma(image.pixels[3 * p], image.pixels[3 * p + 1], image.pixels[3 * p + 2]);
  const uint8_t mean = static_cast<uint8_t>(static_cast<int>(static_cast<double>(sum) / static_cast<double>(n) + 0.5));
  for (uint8_t& v : image.pixels) v = factor == 0.0f ? mean : blend(mean, v, factor);
}

void adjust_saturation(Image& image, float factor) {
  check_rgb(image, "adjust_saturation");
  if (factor == 1.0f) return;
  for (size_t p = 0; p < image.pixels.size(); p += 3) {
    uint8_t* px = &image.pixels[p];
    const uint8_t l = luma(px[0], px[1], px[2]);
    for (int c = 0; c < 3; ++c) px[c] = factor == 0.0f ? l : blend(l, px[c], factor);
  }
}

void adjust_hue(Image& image, float hue_factor) {
  check_rgb(image, "adjust_hue");
  ENGINE_CHECK(hue_factor >= -0.5f && hue_factor <= 0.5f, "adjust_hue: factor must be in [-0.5, 0.5], found {}",
               hue_factor);
  // np.uint8(hue_factor * 255): truncated toward zero, negative values wrapping (-25 -> 231).
  const uint8_t shift = static_cast<uint8_t>(static_cast<int>(hue_factor * 255.0f));
  const HsvTables& tables = hsv_tables();
  for (size_t p = 0; p < image.pixels.size(); p += 3) {
    uint8_t hsv[3];
    rgb_to_hsv(tables, &image.pixels[p], hsv);
    hsv[0] = static_cast<uint8_t>(hsv[0] + shift);
    hsv_to_rgb(tables, hsv, &image.pixels[p]);
  }
}

void to_grayscale(Image& image) {
  check_rgb(image, "to_grayscale");
  for (size_t p = 0; p < image.pixels.size(); p += 3) {
    uint8_t* px = &image.pixels[p];
    px[0] = px[1] = px[2] = luma(px[0], px[1], px[2]);
  }
}

// ---------------------------------------------------------------- blur and flip

BoxBlurPass box_blur_pass(float sigma) {
  // Pillow's _gaussian_blur_radius and ImagingHorizontalBoxBlur, float where Pillow is float.
  const float sigma2 = sigma * sigma / 3;
  const float L = static_cast<float>(std::sqrt(12.0 * sigma2 + 1.0));
  const float l = static_cast<float>(std::floor((L - 1.0) / 2.0));
  float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
  a /= 6 * (sigma2 - (l + 1) * (l + 1));
  BoxBlurPass pass;
  pass.radius = l + a;
  pass.inner = static_cast<int>(pass.radius);
  pass.inner_weight = static_cast<uint32_t>(static_cast<float>(1u << 24) / (pass.radius * 2 + 1));
  pass.edge_weight = ((1u << 24) - (pass.inner * 2 + 1) * pass.inner_weight) / 2;
  return pass;
}

void gaussian_blur(Image& image, float sigma) {
  ENGINE_CHECK(sigma >= 0, "gaussian_blur: sigma must be non-negative, found {}", sigma);
  const BoxBlurPass pass = box_blur_pass(sigma);
  if (pass.radius == 0) return;
  std::vector<uint32_t> scratch;
  for (int p = 0; p < 3; ++p) {  // horizontal passes first, each rounding to uint8
    if (image.channels == 3) box_blur_rows<3>(image, pass, scratch);
    else if (image.channels == 1) box_blur_rows<1>(image, pass, scratch);
    else ENGINE_THROW("gaussian_blur: expected 1 or 3 channels, found {}", image.channels);
  }
  Image other(image.width, image.height, image.channels);
  for (int p = 0; p < 3; ++p) {  // then vertical, ping-ponging between two buffers
    box_blur_columns(image, other, pass, scratch);
    std::swap(image.pixels, other.pixels);
  }
}

void horizontal_flip(Image& image) {
  const int C = image.channels;
  for (int y = 0; y < image.height; ++y) {
    uint8_t* row = image.row(y);
    for (int a = 0, b = image.width - 1; a < b; ++a, --b)
      for (int c = 0; c < C; ++c) std::swap(row[a * C + c], row[b * C + c]);
  }
}

// ---------------------------------------------------------------- to the network

void to_normalized_chw(const Image& image, const Normalization& norm, float* out) {
  check_rgb(image, "to_normalized_chw");
  // Each output is a function of (channel, byte): tabulate torchvision's float32 arithmetic once.
  float table[3][256];
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 256; ++x) table[c][x] = (static_cast<float>(x) / 255.0f - norm.mean[c]) / norm.std[c];
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  const uint8_t* px = image.pixels.data();
  float *r = out, *g = out + plane, *b = out + 2 * plane;
  for (size_t p = 0; p < plane; ++p) {
    r[p] = table[0][px[3 * p]];
    g[p] = table[1][px[3 * p + 1]];
    b[p] = table[2][px[3 * p + 2]];
  }
}

void to_chw_0_255(const Image& image, float* out) {
  const size_t plane = static_cast<size_t>(image.width) * image.height;
  for (int c = 0; c < image.channels; ++c)
    for (size_t p = 0; p < plane; ++p) out[c * plane + p] = image.pixels[p * image.channels + c];
}

}  // namespace engine::data
