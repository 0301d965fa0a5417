// part_picture.h - a picture of what "part-level" means for a stage of the network: the parts of
// each image, the stage's grid over the evaluation view, and the cells each part pools from.
//
// The rule it draws (ssl/eval/part_probe.h, data/part_masks.h): a stage divides the S x S view into
// g x g cells; a part pools from every cell it touches, each cell weighted by the part's share of
// its pixels; a part whose shares add up to less than `min_cells` cells is skipped as too small to
// have a feature of its own at that grid.
//
// Layout. All views share one side S and are drawn nearest-neighbour at the integer scale
// f = ceil(kPartPictureMinTile / S), so a tile is T = S f pixels on a side. One row per image:
//   view | parts | pooling | legend
// each tile T x T and the legend kPartPictureLegendWidth wide, kPartPictureSeparator white pixels
// between them. The row is max(T, legend height) high (the legend has 1 + parts lines of
// kPartPictureLegendLine pixels and kPartPictureLegendPad above and below), rows are
// kPartPictureSeparator apart, and the rest of the picture is white:
//   width  3 (T + kPartPictureSeparator) + kPartPictureLegendWidth
//   height the rows' heights + (rows - 1) kPartPictureSeparator
// Colours. Part k of an image (its position in shares.ids) has part_picture_colour(k), a fixed
// palette of 12 that repeats. Grid lines are 1 white pixel at the start of every cell but the first.
//   view     the evaluation view as the network sees it (before normalisation).
//   parts    the view, each part pixel blended half and half with its part's colour; background (0)
//            and unlabelled (255) pixels are the view's; grid lines.
//   pooling  each cell filled flat with the pooled parts' colours weighted by their shares, over
//            kPartPictureBackdrop for the rest of the cell (background, and the shares of skipped
//            parts). Each pooled part's region (the cells it touches) is outlined in its colour,
//            2 pixels wide along the region's border, inset 2 (k' mod 4) pixels for the k'-th
//            pooled part (less where cells are too small) so outlines of neighbouring parts stay
//            apart. A skipped part's cells are hatched instead: anti-diagonal stripes in its
//            colour, 2 of every 6 pixels (several skipped parts in one cell take turns). Grid lines.
//   legend   "GxG grid, min M cells", then per part a swatch of its colour (crossed out in black
//            when skipped), its name and its area in cells, followed by "too small" when skipped.
//            Lines are cut to kPartPictureLegendChars characters (a long name ends in '~') and
//            drawn in capitals by the built-in font (ssl/eval/bitmap_font.h).
// Written as JPEG, atomically: `moco masks --parts` and the part probe's report.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/image.h"
#include "data/part_masks.h"

namespace engine::ssl {

inline constexpr int kPartPictureMinTile = 192;
inline constexpr int kPartPictureSeparator = 4;
inline constexpr int kPartPictureLegendChars = 32;
inline constexpr int kPartPictureLegendLine = 20;  // glyphs at scale 2 (14 pixels) and a gap of 6
inline constexpr int kPartPictureLegendPad = 8;
// pad, 14-pixel swatch, 8-pixel gap, kPartPictureLegendChars characters at scale 2, pad.
inline constexpr int kPartPictureLegendWidth =
    2 * kPartPictureLegendPad + 14 + 8 + (kPartPictureLegendChars * 6 - 1) * 2;
inline constexpr std::array<uint8_t, 3> kPartPictureBackdrop = {40, 40, 40};

// The colour of the k-th part of an image.
std::array<uint8_t, 3> part_picture_colour(size_t k);

// One image of the picture.
struct PartPictureImage {
  data::Image view;                     // S x S RGB: the evaluation view of the image
  data::Image mask_view;                // S x S ids (data::part_mask_view)
  data::PartCellShares shares;          // at the stage's stride (data::part_cell_shares(mask_view, stride))
  std::vector<std::string> part_names;  // one per shares.ids entry, e.g. "house/roof" (PartTable::type_name)
  float min_cells = 0.5f;               // a part with shares.cells(k) < min_cells is not pooled (too small)
};

// Builds one from an image (RGB) and its full-size mask (1 channel, the image's size): the view
// is data::resize_shorter_side and the center crop of `eval` (eval.random_crop false), kept as
// bytes; the mask view data::part_mask_view; the shares at the stage's `stride`; the names from `table` for
// `class_name` ("<class>/id <k>" for an id the table lacks). The caller checks the image with
// data::check_view_fits first, as for any view it renders.
PartPictureImage make_part_picture_image(const data::Image& image, const data::Image& mask,
                                         const data::PartTable& table, const std::string& class_name,
                                         const data::AugmentConfig& eval, int stride, float min_cells);

// Up to `n` images of ROOT/<split> with their masks (data/part_masks.h), one of each class in turn
// (class 0's first image, class 1's first, ..., then the second of each), so every class shows.
// Throws the part masks' errors (a missing parts.txt or mask, a mask of another size).
struct SplitPartPictures {
  std::vector<PartPictureImage> images;
  size_t parts = 0, skipped = 0;  // parts drawn, and those under min_cells
};
SplitPartPictures part_pictures_of_split(const std::string& root, const std::string& split, int n,
                                         const data::AugmentConfig& eval, int stride, float min_cells);

// Where things are in a picture of `images` (see the layout above).
struct PartPictureLayout {
  int scale = 1;  // f
  int tile = 0;   // T
  std::vector<int> row_top, row_height;
  int width = 0, height = 0;
  int tile_left(int column) const { return column * (tile + kPartPictureSeparator); }  // column 0..3 (3: legend)
};
PartPictureLayout part_picture_layout(const std::vector<PartPictureImage>& images);

// The picture as pixels; throws engine::Error when there is no image, the views differ in side or
// an image's parts are inconsistent (mask view, shares and names of other sizes).
data::Image render_part_picture(const std::vector<PartPictureImage>& images);

// render_part_picture written as a JPEG of `quality` (1-100) at `path`.
void write_part_picture(const std::string& path, const std::vector<PartPictureImage>& images, int quality = 90);

}  // namespace engine::ssl
