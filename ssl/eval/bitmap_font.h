// bitmap_font.h - a tiny built-in font for labels in pictures (the project links no font library).
//
// Glyphs are 5 x 7 pixels, drawn for us, for A-Z, 0-9, the space and . , : / - _ < > ( ) = + ~ ?.
// Lower-case letters are drawn as capitals and any other character as '?'. Text is drawn at an
// integer scale (each glyph pixel becomes scale x scale pixels): a character advances
// kGlyphAdvance * scale pixels and a line is kGlyphHeight * scale high, its top at `y`.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "data/image.h"

namespace engine::ssl {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;  // the glyph and one blank column

// The width `text` takes: kGlyphAdvance * scale per character, less the last blank column.
int text_width(std::string_view text, int scale);

// Draws `text` into an RGB image with its top-left corner at (x, y), in `colour`; glyph pixels
// outside the image are left out.
void draw_text(data::Image& image, int x, int y, std::string_view text, int scale,
               const std::array<uint8_t, 3>& colour);

}  // namespace engine::ssl
