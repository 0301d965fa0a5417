// mask_picture.cpp - see mask_picture.h. Every tile is made on the host from the first `rows`
// images only, so the trainer's call on a large GPU batch copies a few images, not the batch.
#include "ssl/masking/mask_picture.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "data/codec.h"
#include "data/transforms.h"
#include "engine/check.h"
#include "engine/file_io.h"
#include "ops/saliency_mask_plan.h"

namespace engine::ssl {

namespace {

constexpr int kTiles = 5;
constexpr uint8_t kMissingTile = 128;       // gray: no hard negative to show
constexpr uint8_t kSeparatorValue = 255;    // white
constexpr float kHeatAlpha = 0.5f;          // weight of the heat colour over the view
constexpr uint8_t kOutline[3] = {255, 255, 0};  // yellow: stands out on both ends of the heat map
constexpr double kHighPassSpread = 6.0;     // high-passed inputs: 0.5 + x / (6 std)

// Host copies of the first `rows` images of a batch, (rows, 3, H, W) values.
struct HostViews {
  std::vector<float> values;
  int64_t H = 0, W = 0;
  const float* image(int64_t i) const { return values.data() + i * 3 * H * W; }
};

HostViews first_rows(const Tensor& batch, int64_t rows) {
  return {batch.slice(0, 0, rows).to_vector<float>(), batch.size(2), batch.size(3)};
}

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

// How a CHW float image becomes display bytes.
struct Display {
  bool high_passed = false;
  double scale = 1.0;  // high-passed: 6 std of the shown key inputs
};

// An H x W RGB tile, HWC bytes.
using Tile = std::vector<uint8_t>;

Tile display_tile(const float* chw, int64_t H, int64_t W, const Display& display) {
  const data::Normalization norm;
  Tile tile(static_cast<size_t>(H * W * 3));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t p = 0; p < H * W; ++p) {
      const double x = chw[c * H * W + p];
      const double v = display.high_passed ? 0.5 + x / display.scale : x * norm.std[c] + norm.mean[c];
      tile[static_cast<size_t>(p * 3 + c)] = to_byte(255.0 * v);
    }
  return tile;
}

// Blue (0) through green to red (1).
void heat_colour(double v, double rgb[3]) {
  rgb[0] = 255.0 * v;
  rgb[1] = 255.0 * std::max(0.0, 1.0 - 2.0 * std::abs(v - 0.5));
  rgb[2] = 255.0 * (1.0 - v);
}

// The map of one image (G x G) scaled to [0, 1] by its own minimum and maximum, each cell
// painted over its pixels (nearest upsampling, the masking's cell geometry) and blended.
void blend_heat_map(Tile& tile, int64_t H, int64_t W, const float* map, int64_t G) {
  const auto [lo, hi] = std::minmax_element(map, map + G * G);
  const double range = *hi - *lo;
  for (int64_t y = 0; y < H; ++y) {
    const int64_t r = cell_of(y, H, G);
    for (int64_t x = 0; x < W; ++x) {
      const int64_t c = cell_of(x, W, G);
      const double v = range > 0 ? (map[r * G + c] - *lo) / range : 0.5;
      double rgb[3];
      heat_colour(v, rgb);
      uint8_t* px = &tile[static_cast<size_t>((y * W + x) * 3)];
      for (int k = 0; k < 3; ++k) px[k] = to_byte((1.0 - kHeatAlpha) * px[k] + kHeatAlpha * rgb[k]);
    }
  }
}

// A frame along the inside of every foreground cell, so single cells can be counted.
void outline_cells(Tile& tile, int64_t H, int64_t W, const uint8_t* foreground, int64_t G) {
  for (int64_t r = 0; r < G; ++r)
    for (int64_t c = 0; c < G; ++c) {
      if (!foreground[r * G + c]) continue;
      const int64_t y0 = cell_start(r, H, G), y1 = cell_start(r + 1, H, G);
      const int64_t x0 = cell_start(c, W, G), x1 = cell_start(c + 1, W, G);
      const int64_t width = std::min(y1 - y0, x1 - x0) >= 24 ? 2 : 1;
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
          const bool edge = y < y0 + width || y >= y1 - width || x < x0 + width || x >= x1 - width;
          if (edge) std::copy(kOutline, kOutline + 3, &tile[static_cast<size_t>((y * W + x) * 3)]);
        }
    }
}

double population_std(const std::vector<float>& v) {
  double sum = 0, sq = 0;
  for (float x : v) {
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  const double n = static_cast<double>(v.size());
  const double mean = sum / n;
  return std::sqrt(std::max(0.0, sq / n - mean * mean));
}

}  // namespace

void write_mask_picture(const std::string& path, const Tensor& query_view, const Tensor& key_view,
                        const MaskedBatch& masked, const MaskPictureOptions& options) {
  ENGINE_CHECK(query_view.dim() == 4 && query_view.size(1) == 3 && query_view.shape() == key_view.shape(),
               "write_mask_picture: expected query and key views of one shape (N, 3, H, W), found {} and {}",
               query_view.str(), key_view.str());
  ENGINE_CHECK(masked.query.defined() && masked.key.defined() && masked.fg_query.defined(),
               "write_mask_picture: the masked batch is empty; pass what SaliencyGuidedMasking::mask returned");
  ENGINE_CHECK(options.rows >= 1, "write_mask_picture: rows must be at least 1, found {}", options.rows);
  const int64_t rows = std::min(options.rows, query_view.size(0));
  const HostViews q = first_rows(query_view, rows), k = first_rows(key_view, rows);
  const HostViews q_input = first_rows(masked.query, rows), k_input = first_rows(masked.key, rows);
  const int64_t H = q.H, W = q.W, G = masked.fg_query.size(1);
  const std::vector<uint8_t> foreground = masked.fg_query.slice(0, 0, rows).to_vector<uint8_t>();
  const std::vector<float> saliency =
      masked.saliency_query.defined() ? masked.saliency_query.slice(0, 0, rows).to_vector<float>() : std::vector<float>();
  HostViews hard;
  if (masked.hard_negative.defined()) {
    const Tensor first = masked.hard_negative.slice(1, 0, 1);  // (N, 1, 3, H, W)
    hard = {first.slice(0, 0, rows).to_vector<float>(), H, W};
  }

  // High-passed inputs (hp) are shown around mid-gray, scaled by the spread of the (unmasked) key
  // inputs shown.
  Display input_display;
  input_display.high_passed = masked.high_passed;
  if (input_display.high_passed) {
    const double s = population_std(k_input.values);
    input_display.scale = kHighPassSpread * (s > 0 ? s : 1.0);
  }
  const Display view_display;

  const int sep = kMaskPictureSeparator;
  data::Image picture(static_cast<int>(kTiles * W + (kTiles - 1) * sep), static_cast<int>(rows * H + (rows - 1) * sep),
                      3, kSeparatorValue);
  auto place = [&](int64_t row, int64_t column, const Tile& tile) {
    const int64_t top = row * (H + sep), left = column * (W + sep);
    for (int64_t y = 0; y < H; ++y)
      std::copy_n(&tile[static_cast<size_t>(y * W * 3)], W * 3, picture.row(static_cast<int>(top + y)) + left * 3);
  };
  for (int64_t i = 0; i < rows; ++i) {
    const Tile query_tile = display_tile(q.image(i), H, W, view_display);
    place(i, 0, query_tile);
    place(i, 1, display_tile(k.image(i), H, W, view_display));
    Tile heat = query_tile;
    if (!saliency.empty()) blend_heat_map(heat, H, W, &saliency[static_cast<size_t>(i * G * G)], G);
    outline_cells(heat, H, W, &foreground[static_cast<size_t>(i * G * G)], G);
    place(i, 2, heat);
    place(i, 3, display_tile(q_input.image(i), H, W, input_display));
    place(i, 4, hard.values.empty() ? Tile(static_cast<size_t>(H * W * 3), kMissingTile)
                                    : display_tile(hard.image(i), H, W, input_display));
  }
  const std::vector<uint8_t> jpeg = data::encode_jpeg(picture, options.quality);
  write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(jpeg.data()), jpeg.size()));
}

}  // namespace engine::ssl
