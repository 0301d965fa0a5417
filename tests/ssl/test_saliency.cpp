// test_saliency.cpp - the foreground rule against METHOD.md section 12.3 (vectors 17-20), in both the
// paper's form and the published code's row-sorted form (O1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/random.h"
#include "layers/resnet.h"
#include "ssl/masking/saliency.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

std::vector<float> map_of(float (*value)(int r, int c)) {
  std::vector<float> m(49);
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 7; ++c) m[static_cast<size_t>(r * 7 + c)] = value(r, c);
  return m;
}

// The cells as 7 strings of '#' (foreground) and '.', one per row.
std::vector<std::string> picture(const ForegroundCells& cells) {
  std::vector<std::string> rows(7, std::string(7, '.'));
  for (int p = 0; p < 49; ++p)
    if (cells.foreground[static_cast<size_t>(p)]) rows[static_cast<size_t>(p / 7)][static_cast<size_t>(p % 7)] = '#';
  return rows;
}

TEST(ForegroundRule, MapDecreasingToTheRightVector17) {
  const std::vector<float> m = map_of([](int r, int c) { return static_cast<float>(10 * (6 - c) + r); });
  const ForegroundCells clean = foreground_cells(m.data(), 7, ForegroundRule::Threshold);
  EXPECT_NEAR(clean.mean, 33.0, 1e-12);
  EXPECT_NEAR(clean.std, 20.09975, 1e-5);
  EXPECT_NEAR(clean.threshold, 20.94015, 1e-5);
  EXPECT_EQ(clean.count, 34);
  EXPECT_EQ(picture(clean), (std::vector<std::string>{"####...", "#####..", "#####..", "#####..", "#####..",
                                                      "#####..", "#####.."}));
  // O1: the same counts per row, on the right.
  const ForegroundCells quirk = foreground_cells(m.data(), 7, ForegroundRule::RowSortedQuirk);
  EXPECT_EQ(quirk.count, 34);
  EXPECT_DOUBLE_EQ(quirk.ratio, 34.0 / 49.0);
  EXPECT_EQ(picture(quirk), (std::vector<std::string>{"...####", "..#####", "..#####", "..#####", "..#####",
                                                      "..#####", "..#####"}));
}

TEST(ForegroundRule, IncreasingMapVector18BothRulesAgree) {
  const std::vector<float> m = map_of([](int r, int c) { return static_cast<float>(7 * r + c); });
  const ForegroundCells clean = foreground_cells(m.data(), 7, ForegroundRule::Threshold);
  EXPECT_NEAR(clean.threshold, 15.51472, 1e-5);
  EXPECT_EQ(clean.count, 33);
  EXPECT_EQ(picture(clean), (std::vector<std::string>{".......", ".......", "..#####", "#######", "#######",
                                                      "#######", "#######"}));
  EXPECT_EQ(foreground_cells(m.data(), 7, ForegroundRule::RowSortedQuirk).foreground, clean.foreground);
}

TEST(ForegroundRule, ConstantMapVector19IsAllForeground) {
  const std::vector<float> m(49, 3.5f);
  const ForegroundCells cells = foreground_cells(m.data(), 7, ForegroundRule::Threshold);
  EXPECT_EQ(cells.std, 0.0);
  EXPECT_EQ(cells.count, 49);
  EXPECT_EQ(cells.ratio, 1.0);
}

TEST(ForegroundRule, TwoLevelMapsVector20ReachTheBound) {
  for (int low : {36, 37}) {
    std::vector<float> m(49, 1.0f);
    for (int i = 0; i < low; ++i) m[static_cast<size_t>(i)] = 0.0f;
    const ForegroundCells cells = foreground_cells(m.data(), 7, ForegroundRule::Threshold);
    EXPECT_EQ(cells.count, low == 36 ? 13 : 49) << low << " low cells";
  }
}

// A batch of maps through the op (on the maps' device) gives each map's cells of the host rule.
void check_batch_of_maps(Device device) {
  std::vector<float> values = map_of([](int r, int c) { return static_cast<float>(7 * r + c); });
  const std::vector<float> flat(49, 1.0f);
  values.insert(values.end(), flat.begin(), flat.end());
  const std::vector<float> wavy = map_of([](int r, int c) { return static_cast<float>(std::sin(r * 1.3 + c * 0.7)); });
  values.insert(values.end(), wavy.begin(), wavy.end());
  for (ForegroundRule rule : {ForegroundRule::Threshold, ForegroundRule::RowSortedQuirk}) {
    const Tensor cells = foreground_cells(Tensor::from_vector(values, {3, 7, 7}, device), rule);
    EXPECT_EQ(cells.shape(), (Shape{3, 7, 7}));
    EXPECT_EQ(cells.device(), device);
    const std::vector<uint8_t> got = cells.to_vector<uint8_t>();
    int64_t counted = 0;
    for (int64_t n = 0; n < 3; ++n) {
      const ForegroundCells one = foreground_cells(values.data() + n * 49, 7, rule);
      EXPECT_EQ(std::vector<uint8_t>(got.begin() + n * 49, got.begin() + (n + 1) * 49), one.foreground) << n;
      counted += one.count;
    }
    EXPECT_EQ(counted, 33 + 49 + foreground_cells(wavy.data(), 7, rule).count);
  }
  EXPECT_THROW(foreground_cells(Tensor::zeros({2, 7, 6}, DType::f32, device), ForegroundRule::Threshold), Error);
}

TEST(ForegroundRule, BatchOfMapsGivesEachMapsCells) { check_batch_of_maps(Device::cpu()); }

TEST(ForegroundRule, CudaBatchOfMapsGivesEachMapsCells) {
  SKIP_WITHOUT_CUDA();
  check_batch_of_maps(Device::cuda());
}

TEST(SaliencyMaps, SumTheFeatureMapOverChannelsOfAResNet) {
  // A 64-pixel image through ResNet-18's ImageNet stem: a 2x2 grid of 512 channels.
  auto net = nn::make_resnet({"resnet18", 10, nn::ResNetStem::ImageNet}, 1);
  net->eval();
  Tensor images = Tensor::zeros({1, 3, 64, 64});
  Generator gen(2);
  uniform_(images, gen, -1.0, 1.0);
  const Tensor features = net->feature_map(images);
  ASSERT_EQ(features.shape(), (Shape{1, 512, 2, 2}));
  const Tensor maps = saliency_maps(features);
  ASSERT_EQ(maps.shape(), (Shape{1, 2, 2}));
  const std::vector<float> f = features.to_vector<float>(), m = maps.to_vector<float>();
  for (int cell = 0; cell < 4; ++cell) {
    double expected = 0;
    for (int ch = 0; ch < 512; ++ch) expected += f[static_cast<size_t>(ch * 4 + cell)];
    EXPECT_NEAR(m[static_cast<size_t>(cell)], expected, 1e-3 * std::max(1.0, std::abs(expected)));
  }
}

}  // namespace
}  // namespace engine::ssl
