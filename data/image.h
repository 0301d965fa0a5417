// image.h - a decoded picture: 8-bit samples, rows top to bottom, channels interleaved (HWC).
//
// This is what every CPU transform in data/ reads and writes, the same layout PIL keeps in memory,
// so each step can follow PIL's integer arithmetic exactly. RGB images have 3 channels; masks
// (the synthetic dataset's foreground and part labels) have 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace engine::data {

struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels

  Image() = default;
  Image(int width_, int height_, int channels_ = 3, uint8_t fill = 0)
      : width(width_), height(height_), channels(channels_),
        pixels(static_cast<std::size_t>(width_) * height_ * channels_, fill) {}

  bool empty() const { return pixels.empty(); }
  std::size_t row_bytes() const { return static_cast<std::size_t>(width) * channels; }
  uint8_t* row(int y) { return pixels.data() + y * row_bytes(); }
  const uint8_t* row(int y) const { return pixels.data() + y * row_bytes(); }
  uint8_t& at(int x, int y, int c = 0) { return row(y)[x * channels + c]; }
  uint8_t at(int x, int y, int c = 0) const { return row(y)[x * channels + c]; }
};

}  // namespace engine::data
