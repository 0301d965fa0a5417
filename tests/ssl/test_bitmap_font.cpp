// test_bitmap_font.cpp - the built-in label font (ssl/eval/bitmap_font.h): glyph geometry and
// scale, capitals for lower case, '?' for characters it lacks, clipping at the image's edges.
#include <gtest/gtest.h>

#include "ssl/eval/bitmap_font.h"

namespace engine::ssl {
namespace {

constexpr std::array<uint8_t, 3> kInk = {10, 20, 30};

data::Image drawn(std::string_view text, int scale) {
  data::Image image(40, 16, 3, 255);
  draw_text(image, 0, 0, text, scale, kInk);
  return image;
}

bool inked(const data::Image& image, int x, int y) {
  return image.at(x, y, 0) == kInk[0] && image.at(x, y, 1) == kInk[1] && image.at(x, y, 2) == kInk[2];
}

TEST(BitmapFont, DrawsGlyphsOfFiveBySevenAtAnIntegerScale) {
  EXPECT_EQ(text_width("", 2), 0);
  EXPECT_EQ(text_width("AB", 1), 11);
  EXPECT_EQ(text_width("AB", 2), 22);
  // 'I': a centred stem with bars on the first and last rows.
  const data::Image i = drawn("I", 1);
  for (int y = 0; y < kGlyphHeight; ++y) {
    EXPECT_TRUE(inked(i, 2, y)) << "stem, row " << y;
    EXPECT_EQ(inked(i, 1, y), y == 0 || y == kGlyphHeight - 1) << "row " << y;
    EXPECT_FALSE(inked(i, 0, y)) << "row " << y;
  }
  EXPECT_FALSE(inked(i, 2, kGlyphHeight));
  // At scale 2 each glyph pixel is 2 x 2.
  const data::Image big = drawn("I", 2);
  for (int y = 0; y < 2 * kGlyphHeight; ++y)
    for (int x = 0; x < 2 * kGlyphWidth; ++x) EXPECT_EQ(inked(big, x, y), inked(i, x / 2, y / 2)) << x << ", " << y;
}

TEST(BitmapFont, DrawsLowerCaseAsCapitalsUnknownCharactersAsAQuestionMarkAndClips) {
  EXPECT_EQ(drawn("house", 1).pixels, drawn("HOUSE", 1).pixels);
  EXPECT_EQ(drawn("@", 1).pixels, drawn("?", 1).pixels);
  EXPECT_NE(drawn("0", 1).pixels, drawn("O", 1).pixels);
  // Cut at the left and bottom edges: what lies inside is what an unclipped drawing has there.
  data::Image whole(40, 20, 3, 255), part(10, 8, 3, 255);
  draw_text(whole, 0, 0, "WW", 2, kInk);
  draw_text(part, -3, 2, "WW", 2, kInk);
  int ink = 0;
  for (int y = 0; y < part.height; ++y)
    for (int x = 0; x < part.width; ++x) {
      EXPECT_EQ(inked(part, x, y), y >= 2 && inked(whole, x + 3, y - 2)) << x << ", " << y;
      ink += inked(part, x, y) ? 1 : 0;
    }
  EXPECT_GT(ink, 0);
}

}  // namespace
}  // namespace engine::ssl
