// test_part_picture.cpp - the picture of the part masks and the cells each part pools from
// (ssl/eval/part_picture.h). A hand-made 32-pixel mask on a 4 x 4 grid checks the pixels exactly on
// the rendered picture: the view tile, the tint of part pixels only, the flat share-weighted cells,
// the pooled part's outline and the hatching of a part too small to pool (and of every part once
// min_cells is out of reach). The synthetic dataset checks make_part_picture_image (the evaluation
// view as render_view makes it, the mask view, the names) and the JPEG written back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/augment.h"
#include "data/codec.h"
#include "data/image_folder.h"
#include "data/part_masks.h"
#include "data/synth.h"
#include "engine/check.h"
#include "ssl/eval/part_picture.h"
#include "tests/common/temp_dir.h"

namespace engine::ssl {
namespace {

using Colour = std::array<uint8_t, 3>;
using testing::TempDir;

constexpr int kS = 32, kGrid = 4, kStride = kS / kGrid;
constexpr int kScale = 6, kTile = kS * kScale;  // ceil(192 / 32) = 6
constexpr int kCell = kTile / kGrid;            // 48 tile pixels

// A smooth view; part 1 ("big") is the columns x < 12, part 2 ("tiny") the 2 x 2 pixels at
// (28, 28), and pixels (20..23, 0..3) are unlabelled. Part 1's area is 4 + 4 x 0.5 = 6 cells,
// part 2's 4 / 64 cells.
PartPictureImage hand_made(float min_cells) {
  PartPictureImage im;
  im.view = data::Image(kS, kS, 3);
  im.mask_view = data::Image(kS, kS, 1, 0);
  for (int y = 0; y < kS; ++y)
    for (int x = 0; x < kS; ++x) {
      im.view.at(x, y, 0) = static_cast<uint8_t>(20 + 4 * x);
      im.view.at(x, y, 1) = static_cast<uint8_t>(20 + 4 * y);
      im.view.at(x, y, 2) = 100;
      uint8_t& id = im.mask_view.at(x, y);
      if (x < 12) id = 1;
      if (x >= 28 && x < 30 && y >= 28 && y < 30) id = 2;
      if (x >= 20 && x < 24 && y < 4) id = data::kPartUnlabelled;
    }
  im.shares = data::part_cell_shares(im.mask_view, kStride);
  im.part_names = {"toy/big", "toy/tiny"};
  im.min_cells = min_cells;
  return im;
}

Colour pixel(const data::Image& picture, int column, int x, int y) {
  const int left = column * (kTile + kPartPictureSeparator);
  return {picture.at(left + x, y, 0), picture.at(left + x, y, 1), picture.at(left + x, y, 2)};
}

Colour view_pixel(const PartPictureImage& im, int x, int y) {
  return {im.view.at(x, y, 0), im.view.at(x, y, 1), im.view.at(x, y, 2)};
}

Colour mix(const Colour& a, double wa, const Colour& b, double wb) {
  Colour out;
  for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(std::lround(wa * a[c] + wb * b[c]));
  return out;
}

// How many pixels of the inside of cell (a, b) of the pooling tile (4 pixels from its border,
// clear of grid lines and outlines) have `colour`, out of how many.
std::pair<int, int> count_in_cell(const data::Image& picture, int a, int b, const Colour& colour) {
  int hits = 0, total = 0;
  for (int y = a * kCell + 4; y < (a + 1) * kCell - 4; ++y)
    for (int x = b * kCell + 4; x < (b + 1) * kCell - 4; ++x) {
      hits += pixel(picture, 2, x, y) == colour ? 1 : 0;
      ++total;
    }
  return {hits, total};
}

// Black pixels in the swatch of part k of the legend (crossed out when the part is skipped).
int black_in_swatch(const data::Image& picture, size_t k) {
  const int left = 3 * (kTile + kPartPictureSeparator) + kPartPictureLegendPad;
  const int top = kPartPictureLegendPad + static_cast<int>(k + 1) * kPartPictureLegendLine;
  int black = 0;
  for (int y = top; y < top + 14; ++y)
    for (int x = left; x < left + 14; ++x)
      black += picture.at(x, y, 0) == 0 && picture.at(x, y, 1) == 0 && picture.at(x, y, 2) == 0 ? 1 : 0;
  return black;
}

TEST(PartPicture, LayoutIsThreeUpscaledTilesAndALegendPerRow) {
  const std::vector<PartPictureImage> images = {hand_made(0.5f), hand_made(0.5f)};
  const PartPictureLayout layout = part_picture_layout(images);
  EXPECT_EQ(layout.scale, kScale);
  EXPECT_EQ(layout.tile, kTile);
  EXPECT_EQ(layout.width, 3 * (kTile + kPartPictureSeparator) + kPartPictureLegendWidth);
  EXPECT_EQ(layout.height, 2 * kTile + kPartPictureSeparator);  // 3 legend lines fit beside a tile
  const data::Image picture = render_part_picture(images);
  EXPECT_EQ(picture.width, layout.width);
  EXPECT_EQ(picture.height, layout.height);
  // A row whose legend is taller than the tile: 1 + 12 lines.
  PartPictureImage many = hand_made(0.5f);
  many.mask_view = data::Image(kS, kS, 1, 0);
  for (int x = 0; x < 12; ++x) many.mask_view.at(x, x) = static_cast<uint8_t>(x + 1);
  many.shares = data::part_cell_shares(many.mask_view, kStride);
  many.part_names.assign(12, "toy/dot");
  const PartPictureLayout tall = part_picture_layout({many});
  EXPECT_EQ(tall.height, 2 * kPartPictureLegendPad + 13 * kPartPictureLegendLine);
  EXPECT_EQ(render_part_picture({many}).height, tall.height);
}

TEST(PartPicture, ViewAndPartsTilesShowTheViewTintedInsidePartsOnly) {
  const PartPictureImage im = hand_made(0.5f);
  const data::Image picture = render_part_picture({im});
  for (int y = 0; y < kTile; ++y)
    for (int x = 0; x < kTile; ++x)
      ASSERT_EQ(pixel(picture, 0, x, y), view_pixel(im, x / kScale, y / kScale)) << "view tile at " << x << ", " << y;
  // Part 1 pixel (5, 10): half the view, half part 0's colour.
  EXPECT_EQ(pixel(picture, 1, 5 * kScale + 3, 10 * kScale + 3),
            mix(view_pixel(im, 5, 10), 0.5, part_picture_colour(0), 0.5));
  EXPECT_NE(pixel(picture, 1, 5 * kScale + 3, 10 * kScale + 3), view_pixel(im, 5, 10));
  // Part 2 pixel (28, 29) in the second colour.
  EXPECT_EQ(pixel(picture, 1, 28 * kScale + 2, 29 * kScale + 2),
            mix(view_pixel(im, 28, 29), 0.5, part_picture_colour(1), 0.5));
  // Background (20, 20) and unlabelled (21, 1): the view.
  EXPECT_EQ(pixel(picture, 1, 20 * kScale + 3, 20 * kScale + 3), view_pixel(im, 20, 20));
  EXPECT_EQ(pixel(picture, 1, 21 * kScale + 3, 1 * kScale + 3), view_pixel(im, 21, 1));
  // Grid lines: white at the start of cells 1..3, in both tiles that show the grid.
  const Colour white = {255, 255, 255};
  for (int column : {1, 2}) {
    EXPECT_EQ(pixel(picture, column, 100, kCell), white);
    EXPECT_EQ(pixel(picture, column, 3 * kCell, 20), white);
  }
}

TEST(PartPicture, PoolingTileWeighsCellsByShareOutlinesPooledPartsAndHatchesSmallOnes) {
  const Colour big = part_picture_colour(0), tiny = part_picture_colour(1), dark = kPartPictureBackdrop;
  const data::Image picture = render_part_picture({hand_made(0.5f)});
  // Cells flat: part 1 whole in column 0, half in column 1, absent in column 2.
  EXPECT_EQ(count_in_cell(picture, 1, 0, big).first, count_in_cell(picture, 1, 0, big).second);
  const Colour half = mix(big, 0.5, dark, 0.5);
  EXPECT_EQ(count_in_cell(picture, 1, 1, half).first, count_in_cell(picture, 1, 1, half).second);
  EXPECT_EQ(count_in_cell(picture, 1, 2, dark).first, count_in_cell(picture, 1, 2, dark).second);
  // Part 1's region (columns 0 and 1) outlined in its colour along its border: the right edge
  // inside column 1, the top edge of cell (0, 1).
  EXPECT_EQ(pixel(picture, 2, 2 * kCell - 1, kCell + 20), big);
  EXPECT_EQ(pixel(picture, 2, kCell + 20, 0), big);
  EXPECT_EQ(pixel(picture, 2, kCell + 20, 4), half);
  // Part 2 (1/16 cell < 0.5) is skipped: cell (3, 3) is hatched, a third of it in its colour over
  // the backdrop, and its swatch is crossed out; part 1's is not.
  const auto [stripes, total] = count_in_cell(picture, 3, 3, tiny);
  EXPECT_NEAR(static_cast<double>(stripes) / total, 1.0 / 3.0, 0.05);
  EXPECT_EQ(count_in_cell(picture, 3, 3, dark).first, total - stripes);
  EXPECT_GT(black_in_swatch(picture, 1), 0);
  EXPECT_EQ(black_in_swatch(picture, 0), 0);

  // min_cells 0: both pool; cell (3, 3) is flat (1/16 of part 2's colour) and outlined, inset 2
  // pixels as the second pooled part.
  const data::Image all = render_part_picture({hand_made(0.0f)});
  const Colour sixteenth = mix(tiny, 1.0 / 16, dark, 15.0 / 16);
  EXPECT_EQ(count_in_cell(all, 3, 3, sixteenth).first, count_in_cell(all, 3, 3, sixteenth).second);
  EXPECT_EQ(pixel(all, 2, 3 * kCell + 2, 3 * kCell + 20), tiny);
  EXPECT_EQ(pixel(all, 2, 3 * kCell + 1, 3 * kCell + 20), sixteenth);
  EXPECT_EQ(black_in_swatch(all, 1), 0);

  // min_cells out of reach: every part is hatched, none outlined or blended in.
  const data::Image none = render_part_picture({hand_made(1000.0f)});
  const auto [big_stripes, big_total] = count_in_cell(none, 1, 0, big);
  EXPECT_NEAR(static_cast<double>(big_stripes) / big_total, 1.0 / 3.0, 0.05);
  EXPECT_EQ(count_in_cell(none, 1, 0, dark).first, big_total - big_stripes);
  EXPECT_EQ(count_in_cell(none, 1, 2, dark).first, count_in_cell(none, 1, 2, dark).second);
  EXPECT_GT(black_in_swatch(none, 0), 0);
  EXPECT_GT(black_in_swatch(none, 1), 0);
}

TEST(PartPicture, RefusesNoImagesAndInconsistentOnes) {
  EXPECT_THROW(render_part_picture({}), Error);
  PartPictureImage other_side = hand_made(0.5f);
  other_side.view = data::Image(kS + 1, kS + 1, 3);
  EXPECT_THROW(render_part_picture({hand_made(0.5f), other_side}), Error);
  PartPictureImage unnamed = hand_made(0.5f);
  unnamed.part_names.pop_back();
  EXPECT_THROW(render_part_picture({unnamed}), Error);
}

TEST(PartPicture, MakesTheEvaluationViewOfASyntheticDatasetAndWritesTheJpeg) {
  TempDir dir("part_picture");
  data::SynthOptions synth;
  synth.classes = 2;
  synth.train_per_class = 2;
  synth.val_per_class = 2;
  synth.size = 32;
  synth.threads = 1;
  const std::string root = (dir.path() / "synth").string();
  data::write_synth_dataset(root, synth);

  const data::PartTable table = data::PartTable::read(data::part_table_path(root));
  const data::ImageFolder folder(root + "/val");
  const data::AugmentConfig eval = data::eval_transform(24);  // Resize(27) + CenterCrop(24): not the identity
  std::vector<PartPictureImage> images;
  for (const data::Sample& sample : folder.samples()) {
    const data::Image image = data::read_image(sample.path);
    const data::Image mask =
        data::read_part_mask(data::part_mask_path(root, "val", sample.path), image.width, image.height, sample.path);
    const std::string& class_name = folder.classes()[static_cast<size_t>(sample.label)];
    images.push_back(make_part_picture_image(image, mask, table, class_name, eval, 8, 0.5f));  // 3x3 cells
    const PartPictureImage& im = images.back();

    // The view is render_view's evaluation view, as bytes.
    data::AugmentConfig raw = eval;
    raw.normalize = false;
    std::vector<float> chw(3 * 24 * 24);
    data::render_view(image, data::ViewParams{}, raw, 1, chw.data());
    ASSERT_EQ(im.view.width, 24);
    ASSERT_EQ(im.view.height, 24);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 24; ++y)
        for (int x = 0; x < 24; ++x)
          ASSERT_EQ(im.view.at(x, y, c), chw[static_cast<size_t>((c * 24 + y) * 24 + x)]) << sample.path;
    EXPECT_EQ(im.mask_view.pixels, data::part_mask_view(mask, eval).pixels);
    EXPECT_EQ(im.shares.grid, 3);
    ASSERT_FALSE(im.shares.ids.empty()) << sample.path;
    ASSERT_EQ(im.part_names.size(), im.shares.ids.size());
    for (size_t k = 0; k < im.shares.ids.size(); ++k)
      EXPECT_EQ(im.part_names[k], table.type_name(table.label(class_name, im.shares.ids[k])));
    EXPECT_EQ(im.min_cells, 0.5f);

    // A table without the class names the parts by id.
    const data::PartTable elsewhere({{"other", 1, "thing"}});
    const PartPictureImage unknown = make_part_picture_image(image, mask, elsewhere, class_name, eval, 8, 0.5f);
    EXPECT_EQ(unknown.part_names[0], class_name + "/id " + std::to_string(unknown.shares.ids[0]));
  }

  const std::string path = (dir.path() / "parts.jpg").string();
  write_part_picture(path, images, 95);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  const data::Image decoded = data::read_image(path);
  const data::Image rendered = render_part_picture(images);
  // 24-pixel views at scale 8: 192-pixel tiles; four rows of at most 1 + 4 legend lines.
  EXPECT_EQ(decoded.width, 3 * (192 + kPartPictureSeparator) + kPartPictureLegendWidth);
  EXPECT_EQ(decoded.height, 4 * 192 + 3 * kPartPictureSeparator);
  ASSERT_EQ(decoded.pixels.size(), rendered.pixels.size());
  double error = 0;
  for (size_t i = 0; i < decoded.pixels.size(); ++i) error += std::abs(decoded.pixels[i] - rendered.pixels[i]);
  EXPECT_LT(error / static_cast<double>(decoded.pixels.size()), 4.0);
}

}  // namespace
}  // namespace engine::ssl
