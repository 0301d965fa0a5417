// test_mask_picture.cpp - the picture of a masked batch (ssl/masking/mask_picture.h), decoded back: its
// size (five tiles and separators per row), the views un-normalised, the heat map's colours over
// the query view, the outlines of the foreground cells, the gray tile without hard negatives, and
// the mid-gray display of high-passed inputs. Views are uniform or smooth so JPEG's error is small.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <functional>

#include "data/codec.h"
#include "data/transforms.h"
#include "engine/check.h"
#include "ssl/masking/mask_picture.h"
#include "tests/common/temp_dir.h"

namespace engine::ssl {
namespace {

using testing::TempDir;

constexpr int64_t kSide = 96;  // 4 x 4 cells of 24 pixels: 2-pixel outlines, aligned to JPEG's chroma
constexpr int64_t kGrid = 4;
constexpr int64_t kImages = 3;

using ByteOf = std::function<uint8_t(int64_t n, int64_t c, int64_t y, int64_t x)>;

// A normalised view (kImages, 3, kSide, kSide) whose un-normalised bytes are byte_of(...).
Tensor normalised_view(const ByteOf& byte_of) {
  const data::Normalization norm;
  std::vector<float> values;
  for (int64_t n = 0; n < kImages; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < kSide; ++y)
        for (int64_t x = 0; x < kSide; ++x)
          values.push_back((byte_of(n, c, y, x) / 255.0f - norm.mean[c]) / norm.std[c]);
  return Tensor::from_vector(values, {kImages, 3, kSide, kSide});
}

uint8_t smooth_byte(int64_t n, int64_t c, int64_t y, int64_t x) {
  return static_cast<uint8_t>(20 + 10 * n + 10 * c + y + x);  // 20 to 250
}

// The mean colour of a rectangle [x0, x1) x [y0, y1) of tile (row, column) of the decoded picture.
std::array<double, 3> mean_rgb(const data::Image& picture, int64_t row, int64_t column, int64_t x0, int64_t y0,
                               int64_t x1, int64_t y1) {
  const int64_t top = row * (kSide + kMaskPictureSeparator), left = column * (kSide + kMaskPictureSeparator);
  std::array<double, 3> sum = {0, 0, 0};
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x)
      for (int c = 0; c < 3; ++c) sum[c] += picture.at(static_cast<int>(left + x), static_cast<int>(top + y), c);
  const double count = static_cast<double>((x1 - x0) * (y1 - y0));
  for (double& s : sum) s /= count;
  return sum;
}

void expect_colour(const std::array<double, 3>& actual, const std::array<double, 3>& expected, double tolerance,
                   const std::string& what) {
  for (int c = 0; c < 3; ++c)
    EXPECT_NEAR(actual[c], expected[c], tolerance) << what << ", channel " << c;
}

data::Image write_and_read(const std::string& path, const Tensor& q, const Tensor& k, const MaskedBatch& m,
                           int64_t rows) {
  MaskPictureOptions options;
  options.rows = rows;
  write_mask_picture(path, q, k, m, options);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  return data::read_image(path);
}

TEST(MaskPicture, ShowsTheViewsTheHeatMapTheOutlinedForegroundAndAGrayTileWithoutHardNegatives) {
  TempDir dir("mask_picture");
  const Tensor query_view = normalised_view([](auto, auto, auto, auto) { return uint8_t{128}; });
  const Tensor key_view = normalised_view(smooth_byte);
  MaskedBatch m;
  m.query = normalised_view([](auto, auto, auto, auto) { return uint8_t{200}; });
  m.key = key_view;  // not high-passed: the inputs are shown un-normalised
  // Foreground: cells (0, 0) and (1, 1). Saliency: cell (0, 0) the maximum, (3, 3) the minimum,
  // every other cell halfway.
  std::vector<uint8_t> fg(kImages * kGrid * kGrid, 0);
  std::vector<float> saliency(kImages * kGrid * kGrid, 4.0f);
  for (int64_t n = 0; n < kImages; ++n) {
    fg[n * 16 + 0] = fg[n * 16 + 5] = 1;
    saliency[n * 16 + 0] = 10.0f;
    saliency[n * 16 + 15] = -2.0f;
  }
  m.fg_query = Tensor::from_vector(fg, {kImages, kGrid, kGrid});
  m.saliency_query = Tensor::from_vector(saliency, {kImages, kGrid, kGrid});

  const data::Image picture = write_and_read((dir.path() / "masks.jpg").string(), query_view, key_view, m, 2);
  // Two of the three images; five tiles and four separators across, two tiles and one separator down.
  EXPECT_EQ(picture.width, 5 * kSide + 4 * kMaskPictureSeparator);
  EXPECT_EQ(picture.height, 2 * kSide + kMaskPictureSeparator);

  for (int64_t row = 0; row < 2; ++row) {
    // The key view un-normalised, within JPEG's error (larger next to the white separators, whose
    // 16-pixel blocks the tile shares, so the largest error is taken inside).
    double abs_sum = 0;
    int64_t worst = 0;
    auto inside = [](int64_t p) { return p >= 8 && p < kSide - 8; };
    const int64_t left = kSide + kMaskPictureSeparator, top = row * (kSide + kMaskPictureSeparator);
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          const int64_t d = std::abs(picture.at(static_cast<int>(left + x), static_cast<int>(top + y), static_cast<int>(c)) -
                                     smooth_byte(row, c, y, x));
          abs_sum += static_cast<double>(d);
          if (inside(x) && inside(y)) worst = std::max(worst, d);
        }
    EXPECT_LT(abs_sum / (kSide * kSide * 3), 2.0) << "row " << row;
    EXPECT_LE(worst, 6) << "row " << row;

    expect_colour(mean_rgb(picture, row, 0, 0, 0, kSide, kSide), {128, 128, 128}, 2, "query view");
    expect_colour(mean_rgb(picture, row, 3, 0, 0, kSide, kSide), {200, 200, 200}, 2, "masked query");
    expect_colour(mean_rgb(picture, row, 4, 0, 0, kSide, kSide), {128, 128, 128}, 2, "missing hard negative");
    // The heat map, half over the gray view: red at the maximum, blue at the minimum, green halfway
    // (cell interiors, away from the outlines).
    expect_colour(mean_rgb(picture, row, 2, 6, 6, 18, 18), {191.5, 64, 64}, 6, "maximum cell");
    expect_colour(mean_rgb(picture, row, 2, 78, 78, 90, 90), {64, 64, 191.5}, 6, "minimum cell");
    expect_colour(mean_rgb(picture, row, 2, 54, 30, 66, 42), {128, 191.5, 128}, 6, "middle cell");
    // Foreground cells are framed in yellow (two pixels along each side); background cells are not.
    for (auto [x0, y0] : {std::pair<int64_t, int64_t>{0, 0}, {24, 24}}) {
      const auto top_edge = mean_rgb(picture, row, 2, x0 + 4, y0, x0 + 20, y0 + 2);
      const auto left_edge = mean_rgb(picture, row, 2, x0, y0 + 4, x0 + 2, y0 + 20);
      for (const auto& edge : {top_edge, left_edge}) {
        EXPECT_GT(edge[0], 215) << "outline of the cell at " << x0 << ", " << y0;
        EXPECT_GT(edge[1], 215) << "outline of the cell at " << x0 << ", " << y0;
        EXPECT_LT(edge[2], 60) << "outline of the cell at " << x0 << ", " << y0;
      }
    }
    expect_colour(mean_rgb(picture, row, 2, 52, 0, 68, 2), {128, 191.5, 128}, 8, "top edge of background cell (0, 2)");
  }
  // The separators are white.
  const auto between_tiles = mean_rgb(picture, 0, 0, kSide, 0, kSide + kMaskPictureSeparator, kSide);
  for (double v : between_tiles) EXPECT_GT(v, 235);
}

TEST(MaskPicture, ShowsHighPassedInputsAroundMidGrayAndOutlinesEveryCellWithoutSaliency) {
  TempDir dir("mask_picture_hp");
  const Tensor query_view = normalised_view([](auto, auto, auto, auto) { return uint8_t{100}; });
  const Tensor key_view = normalised_view(smooth_byte);
  // High-passed inputs: the key input +-a in a checkerboard (std a), the masked query 1.5 a and
  // the hard negative -1.5 a everywhere, shown as 0.5 + x / (6 a): 0.75 and 0.25 of white.
  const float a = 0.3f;
  std::vector<float> key_input;
  for (int64_t i = 0; i < kImages * 3 * kSide * kSide; ++i)
    key_input.push_back(((i % kSide) + (i / kSide)) % 2 ? a : -a);
  MaskedBatch m;
  m.key = Tensor::from_vector(key_input, {kImages, 3, kSide, kSide});
  m.high_passed = true;
  m.query = Tensor::full({kImages, 3, kSide, kSide}, 1.5 * a);
  m.hard_negative = Tensor::full({kImages, 2, 3, kSide, kSide}, -1.5 * a);
  m.fg_query = Tensor::ones({kImages, kGrid, kGrid}, DType::u8);  // --saliency none: no map

  const data::Image picture = write_and_read((dir.path() / "hp.jpg").string(), query_view, key_view, m, 8);
  EXPECT_EQ(picture.width, 5 * kSide + 4 * kMaskPictureSeparator);
  EXPECT_EQ(picture.height, 3 * kSide + 2 * kMaskPictureSeparator);  // all three images
  for (int64_t row = 0; row < kImages; ++row) {
    expect_colour(mean_rgb(picture, row, 3, 0, 0, kSide, kSide), {191.25, 191.25, 191.25}, 2, "masked query");
    expect_colour(mean_rgb(picture, row, 4, 0, 0, kSide, kSide), {63.75, 63.75, 63.75}, 2, "hard negative");
    // No heat map: the query view shows through inside the cells, and every cell is framed.
    expect_colour(mean_rgb(picture, row, 2, 30, 54, 42, 66), {100, 100, 100}, 3, "inside a cell");
    for (int64_t cell = 0; cell < kGrid; ++cell) {
      const auto edge = mean_rgb(picture, row, 2, cell * 24 + 4, 72, cell * 24 + 20, 74);
      EXPECT_GT(edge[0], 215) << "cell (3, " << cell << ")";
      EXPECT_LT(edge[2], 60) << "cell (3, " << cell << ")";
    }
  }
}

TEST(MaskPicture, RefusesViewsOfDifferentShapes) {
  TempDir dir("mask_picture_bad");
  const Tensor view = normalised_view(smooth_byte);
  MaskedBatch m;
  m.query = m.key = view;
  m.fg_query = Tensor::ones({kImages, kGrid, kGrid}, DType::u8);
  EXPECT_THROW(write_mask_picture((dir.path() / "x.jpg").string(), view, view.slice(0, 0, 2), m, {}), Error);
}

}  // namespace
}  // namespace engine::ssl
