// test_hue_exhaustive.cpp - adjust_hue uses lookup tables for speed; this checks them against a
// direct transcription of Pillow's rgb2hsv/hsv2rgb (Convert.c) on every one of the 2^24 colours,
// for several shifts, so the tables cannot hide a mistake in some corner of the colour cube.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "data/transforms.h"

namespace engine::data {
namespace {

uint8_t clip(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

// Pillow, term by term, with its float and double types.
void pillow_hue_shift(const uint8_t* in, uint8_t shift, uint8_t* out) {
  const uint8_t r = in[0], g = in[1], b = in[2];
  const uint8_t maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
  uint8_t h8 = 0, s8 = 0;
  const uint8_t v8 = maxc;
  if (minc != maxc) {
    const float cr = static_cast<float>(maxc - minc);
    const float s = cr / static_cast<float>(maxc);
    const float rc = static_cast<float>(maxc - r) / cr, gc = static_cast<float>(maxc - g) / cr,
                bc = static_cast<float>(maxc - b) / cr;
    float h;
    if (r == maxc) h = bc - gc;
    else if (g == maxc) h = static_cast<float>(2.0 + rc - bc);
    else h = static_cast<float>(4.0 + gc - rc);
    h = static_cast<float>(std::fmod(h / 6.0 + 1.0, 1.0));
    h8 = clip(static_cast<int>(h * 255.0));
    s8 = clip(static_cast<int>(s * 255.0));
  }
  h8 = static_cast<uint8_t>(h8 + shift);
  if (s8 == 0) {
    out[0] = out[1] = out[2] = v8;
    return;
  }
  const int i = static_cast<int>(std::floor(static_cast<float>(h8) * 6.0 / 255.0));
  const float f = static_cast<float>(static_cast<float>(h8) * 6.0 / 255.0 - static_cast<float>(i));
  const float fs = static_cast<float>(static_cast<float>(s8) / 255.0);
  const uint8_t p = clip(static_cast<int>(std::round(static_cast<float>(v8) * (1.0 - fs))));
  const uint8_t q = clip(static_cast<int>(std::round(static_cast<float>(v8) * (1.0 - fs * f))));
  const uint8_t t = clip(static_cast<int>(std::round(static_cast<float>(v8) * (1.0 - fs * (1.0 - f)))));
  const uint8_t v = v8;
  const uint8_t table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  for (int c = 0; c < 3; ++c) out[c] = table[i % 6][c];
}

TEST(HueExhaustive, TablesEqualPillowsFormulaOnEveryColour) {
  Image cube(4096, 4096, 3);
  for (uint32_t k = 0; k < (1u << 24); ++k) {
    cube.pixels[3 * k] = static_cast<uint8_t>(k >> 16);
    cube.pixels[3 * k + 1] = static_cast<uint8_t>(k >> 8);
    cube.pixels[3 * k + 2] = static_cast<uint8_t>(k);
  }
  for (float factor : {0.1f, -0.1f, 0.0371f, -0.5f}) {
    Image shifted = cube;
    adjust_hue(shifted, factor);
    const uint8_t shift = static_cast<uint8_t>(static_cast<int>(factor * 255.0f));
    int64_t mismatches = 0;
    for (uint32_t k = 0; k < (1u << 24); ++k) {
      uint8_t expected[3];
      pillow_hue_shift(&cube.pixels[3 * k], shift, expected);
      if (std::memcmp(expected, &shifted.pixels[3 * k], 3) != 0 && ++mismatches <= 3)
        ADD_FAILURE() << "hue " << factor << ": colour (" << (k >> 16) << ", " << ((k >> 8) & 255) << ", "
                      << (k & 255) << ")";
    }
    EXPECT_EQ(mismatches, 0) << "hue " << factor;
  }
}

}  // namespace
}  // namespace engine::data
