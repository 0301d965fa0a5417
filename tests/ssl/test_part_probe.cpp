// test_part_probe.cpp - part-level probing: region_avgpool against a hand computation, the part
// masks' geometry and format (data/part_masks.h), and the probe (ssl/eval/part_probe.h) end to end.
#include "ssl/eval/part_probe.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "data/codec.h"
#include "data/part_masks.h"
#include "data/sample_rng.h"
#include "data/synth.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/random.h"
#include "ops/pooling.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/data/temp_dataset.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using data::testing::write_bytes;
using testing::TempDir;
using testing::error_of;

void expect_error_contains(const std::function<void()>& f, const std::string& part) {
  const std::string message = error_of(f);
  EXPECT_NE(message.find(part), std::string::npos) << message;
}

// ---- region_avgpool ----

// x (1, 2, 2, 2): channel 0 holds 1 2 / 3 4, channel 1 holds 10 20 / 30 40. Region 0 weighs the
// cells 1, 0 / 0.5, 0 (a part covering all of the first cell and half of the third); region 1
// weighs every cell 0.25; region 2 weighs nothing.
//   y[0] = (1 * 1 + 0.5 * 3) / 1.5 = 5/3 and (10 + 15) / 1.5 = 50/3
//   y[1] = the plain mean: 2.5 and 25; y[2] = 0
TEST(RegionAvgPool, MatchesAHandComputationInBothLayouts) {
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2});
  const Tensor w = Tensor::from_vector<double>({1, 0, 0.5, 0, 0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0}, {3, 2, 2});
  const Tensor image = Tensor::from_vector<int64_t>({0, 0, 0}, {3});
  const std::vector<double> expected = {5.0 / 3, 50.0 / 3, 2.5, 25, 0, 0};
  for (const Tensor& input : {x, x.contiguous(MemoryFormat::NHWC)}) {
    const std::vector<double> y = region_avgpool(input, w, image).to_vector<double>();
    ASSERT_EQ(y.size(), expected.size());
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-14) << i;
  }
}

// Each region reads its own image: image 1's cells are image 0's plus 100.
TEST(RegionAvgPool, ReadsTheImageEachRegionBelongsTo) {
  std::vector<float> values(2 * 3 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 12) + (i >= 12 ? 100.f : 0.f);
  const Tensor x = Tensor::from_vector(values, {2, 3, 2, 2});
  const Tensor w = Tensor::from_vector<float>({0, 1, 0, 0, 0, 1, 0, 0}, {2, 2, 2});  // both: cell 1 only
  const std::vector<float> y = region_avgpool(x, w, Tensor::from_vector<int64_t>({1, 0}, {2})).to_vector<float>();
  EXPECT_EQ(y, (std::vector<float>{101, 105, 109, 1, 5, 9}));  // cell 1 of channels 0, 1, 2
}

TEST(RegionAvgPool, RefusesWhatItCannotPool) {
  const Tensor x = Tensor::ones({2, 3, 2, 2});
  const Tensor w = Tensor::ones({1, 2, 2});
  expect_error_contains([&] { region_avgpool(x, w, Tensor::from_vector<int64_t>({2}, {1})); }, "outside x's 2 images");
  expect_error_contains([&] { region_avgpool(x, Tensor::ones({1, 3, 2}), Tensor::from_vector<int64_t>({0}, {1})); },
                        "expected weights (R, 2, 2)");
  Tensor trained = Tensor::ones({2, 3, 2, 2});
  trained.requires_grad_(true);
  expect_error_contains([&] { region_avgpool(trained, w, Tensor::from_vector<int64_t>({0}, {1})); }, "no backward");
}

// region_avgpool on CUDA against the CPU for layer4 and layer3 maps of N images with 3 parts each,
// channels-last as the bf16 path will keep them: f32 sums of at most 196 products: 1e-5.
void check_region_avgpool_cuda(int64_t N, int64_t C, int64_t side) {
  Generator gen(5, 0x9A47);
  Tensor x = Tensor::empty({N, C, side, side});
  uniform_(x, gen, -1.0, 1.0);
  x = x.contiguous(MemoryFormat::NHWC);
  Tensor w = Tensor::empty({3 * N, side, side});
  uniform_(w, gen, 0.0, 1.0);
  std::vector<int64_t> image(static_cast<size_t>(3 * N));
  for (int64_t r = 0; r < 3 * N; ++r) image[static_cast<size_t>(r)] = (r * 7) % N;
  const Tensor regions = Tensor::from_vector(image, {3 * N});
  const Tensor cpu = region_avgpool(x, w, regions);
  const Tensor cuda = region_avgpool(x.to(Device::cuda()), w.to(Device::cuda()), regions);
  EXPECT_TRUE(testing::all_close(cuda.to(Device::cpu()), cpu, 1e-5, 1e-5));
}

TEST(RegionAvgPool, CudaMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  check_region_avgpool_cuda(3, 40, 5);
}

// ResNet-50 at 224 px, batch 64: layer4 (2048 x 7 x 7) and layer3 (1024 x 14 x 14).
TEST(RegionAvgPool, CudaRealSizeMatchesCpuAtResNet50Stages) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  check_region_avgpool_cuda(64, 2048, 7);
  check_region_avgpool_cuda(64, 1024, 14);
}

// ---- the mask format and geometry ----

data::Image ids_image(int width, int height, const std::vector<uint8_t>& ids) {
  data::Image image(width, height, 1);
  image.pixels = ids;
  return image;
}

// A 4x4 view in 2x2 cells: part 1 fills the top-left cell and one pixel of the top-right; part 2
// fills the bottom row; 255 (unlabelled) and 0 are not parts.
TEST(PartMasks, CellSharesCountEachCellsPixels) {
  const data::Image view = ids_image(4, 4, {1, 1, 1, 0,  //
                                            1, 1, 0, 255,  //
                                            2, 2, 2, 2,    //
                                            2, 2, 0, 2});
  const data::PartCellShares s = data::part_cell_shares(view, 2);
  ASSERT_EQ(s.ids, (std::vector<int>{1, 2}));
  EXPECT_EQ(s.shares, (std::vector<float>{1, 0.25f, 0, 0,  // part 1
                                          0, 0, 1, 0.75f}));  // part 2
  EXPECT_FLOAT_EQ(s.cells(0), 1.25f);
  EXPECT_FLOAT_EQ(s.cells(1), 1.75f);
}

// A stride that does not divide the view: 5 pixels in cells of 2 make ceil(5 / 2) = 3 cells per
// side, as the network's stride-2 layers round up; the last row and column of cells hold one
// pixel each. Part 1 is the last column; part 2 the pixel (0, 0).
TEST(PartMasks, CellsFollowTheStageStrideWhenItDoesNotDivideTheView) {
  std::vector<uint8_t> ids(25, 0);
  for (int y = 0; y < 5; ++y) ids[static_cast<size_t>(y * 5 + 4)] = 1;
  ids[0] = 2;
  const data::PartCellShares s = data::part_cell_shares(ids_image(5, 5, ids), 2);
  ASSERT_EQ(s.grid, 3);
  EXPECT_EQ(s.shares, (std::vector<float>{0, 0, 1, 0, 0, 1, 0, 0, 1,          // part 1: the cells of column 2
                                          0.25f, 0, 0, 0, 0, 0, 0, 0, 0}));  // part 2: a quarter of cell (0, 0)
  EXPECT_EQ(s.cell_of(4), 2);
  EXPECT_EQ(s.cell_start(2), 4);
}

// The evaluation transform at size 4 resizes the shorter side to round(4 * 256 / 224) = 5 and
// crops the centre 4x4; the mask follows by the nearest pixel. A 10x5 mask stays 10x5 (no resize)
// and is cropped at left round(6 / 2) = 3, top round(1 / 2) = 0 (Python's round half to even).
TEST(PartMasks, TheViewOfAMaskFollowsTheEvaluationCrop) {
  std::vector<uint8_t> ids(50);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 10; ++x) ids[static_cast<size_t>(y * 10 + x)] = static_cast<uint8_t>(10 * y + x);
  const data::Image view = data::part_mask_view(ids_image(10, 5, ids), data::eval_transform(4));
  ASSERT_EQ(view.width, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) EXPECT_EQ(view.at(x, y), 10 * y + x + 3) << x << "," << y;
  // A 2x3 mask (rows 1 2 / 3 4 / 5 6) upsampled to 5x7, cropped at left 0, top round(1.5) = 2:
  // view pixel (x, y) takes source column floor((x + 0.5) 2 / 5), row floor((y + 2.5) 3 / 7).
  const data::Image up = data::part_mask_view(ids_image(2, 3, {1, 2, 3, 4, 5, 6}), data::eval_transform(4));
  const std::vector<uint8_t> expected = {3, 3, 4, 4, 3, 3, 4, 4, 3, 3, 4, 4, 5, 5, 6, 6};
  EXPECT_EQ(up.pixels, expected);
}

TEST(PartMasks, TheTableNamesEachPartType) {
  const data::PartTable t = data::PartTable::parse(
      "# class id name\nhouse 1 body\nhouse 2 roof   # the triangle\n\ncart 1 left wheel\n", "parts.txt");
  EXPECT_EQ(t.size(), 3);
  EXPECT_EQ(t.label("house", 2), 1);
  EXPECT_EQ(t.label("cart", 1), 2);
  EXPECT_EQ(t.label("cart", 2), -1);
  EXPECT_EQ(t.type_name(2), "cart/left wheel");
  EXPECT_EQ(data::PartTable::parse(t.text(), "again").types().size(), 3u);
  expect_error_contains([] { data::PartTable::parse("house 0 body\n", "p"); }, "p line 1: the id '0'");
  expect_error_contains([] { data::PartTable::parse("house 255 x\n", "p"); }, "ids are 1 to 254");
  expect_error_contains([] { data::PartTable::parse("house 1 a\nhouse 1 b\n", "p"); }, "p line 2: class house has part id 1 twice");
  expect_error_contains([] { data::PartTable::parse("house 1\n", "p"); }, "p line 1: expected");
  expect_error_contains([] { data::PartTable::parse("# nothing\n", "p"); }, "no part type");
  // A byte-order mark, CRLF line ends, and tabs for a class folder whose name holds a space.
  const data::PartTable tabs =
      data::PartTable::parse("\xEF\xBB\xBFhouse 1 body\r\nmy house\t2\tfront door\r\n", "tabs.txt");
  EXPECT_EQ(tabs.label("house", 1), 0);
  EXPECT_EQ(tabs.type_name(1), "my house/front door");
  expect_error_contains([] { data::PartTable::parse("my house 2 door\n", "p"); }, "needs tabs between the fields");
  // The synthetic dataset's table: the house's parts, then the lollipop's.
  const data::PartTable synth = data::synth_part_table(2);
  EXPECT_EQ(synth.type_name(0), "house/body");
  EXPECT_EQ(synth.type_name(3), "lollipop/stem");
}

TEST(PartMasks, MasksAreFoundAndCheckedBesideTheirImages) {
  TempDir dir("part_masks");
  const std::string root = dir.path().string();
  const std::string image = (dir.path() / "train" / "house" / "sub" / "a.b.jpg").string();
  EXPECT_EQ(data::part_mask_path(root, "train", image), (dir.path() / "masks/train/house/sub/a.b_parts.png").string());
  const std::string mask = data::part_mask_path(root, "train", image);
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "no part mask for " + image);
  write_bytes(mask, data::encode_png(ids_image(4, 2, std::vector<uint8_t>(8, 1))));
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "is 4x2, but its image");
  data::Image colour(4, 3, 3, 0);
  colour.at(1, 2, 0) = 7;
  write_bytes(mask, data::encode_png(colour));
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "is an RGB PNG");
  // A palette or 16-bit PNG would decode to colours or high bytes, not ids: refused from the header
  // (IHDR's bit depth is byte 24 of the file, its colour type byte 25).
  std::vector<uint8_t> png = data::encode_png(ids_image(4, 3, std::vector<uint8_t>(12, 3)));
  std::vector<uint8_t> palette = png, deep = png;
  palette[25] = 3;
  deep[24] = 16;
  write_bytes(mask, palette);
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "is a palette PNG");
  write_bytes(mask, deep);
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "is not 8-bit (bit depth 16");
  write_bytes(mask, data::encode_jpeg(data::Image(4, 3, 1, 3)));
  expect_error_contains([&] { data::read_part_mask(mask, 4, 3, image); }, "is not a PNG");
  write_bytes(mask, png);
  EXPECT_EQ(data::read_part_mask(mask, 4, 3, image).at(3, 2), 3);
  expect_error_contains([&] { data::PartTable::read(data::part_table_path(root)); }, "no part table");
}

// ---- the probe ----

// Two classes whose two parts are separable by colour alone: class a's parts are red and green,
// class b's blue and yellow. Each 32x32 image splits at a random row into its two parts, with noise;
// the masks say which pixel is which part.
void write_colour_parts_dataset(const fs::path& root, int train_per_class, int val_per_class) {
  const uint8_t colours[2][2][3] = {{{220, 30, 30}, {30, 200, 40}}, {{30, 40, 220}, {230, 220, 30}}};
  write_bytes(root / "masks" / "parts.txt",
              [] {
                const std::string t = "a 1 red\na 2 green\nb 1 blue\nb 2 yellow\n";
                return std::vector<uint8_t>(t.begin(), t.end());
              }());
  for (const char* split : {"train", "val"}) {
    const int count = std::string(split) == "train" ? train_per_class : val_per_class;
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < count; ++i) {
        data::SampleRng rng(17, static_cast<uint64_t>(c + (split[0] == 'v' ? 2 : 0)), static_cast<uint64_t>(i));
        const int cut = 10 + static_cast<int>(rng.uniform(0, 12));
        data::Image image(32, 32, 3), mask(32, 32, 1);
        for (int y = 0; y < 32; ++y) {
          for (int x = 0; x < 32; ++x) {
            const int part = y < cut ? 0 : 1;
            mask.at(x, y) = static_cast<uint8_t>(part + 1);
            for (int k = 0; k < 3; ++k) {
              const double v = colours[c][part][k] + rng.uniform(-25, 25);
              image.at(x, y, k) = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
            }
          }
        }
        const std::string cls = c == 0 ? "a" : "b", name = cls + std::to_string(i);
        write_bytes(root / split / cls / (name + ".png"), data::encode_png(image));
        write_bytes(root / "masks" / split / cls / (name + "_parts.png"), data::encode_png(mask));
      }
    }
  }
}

PartProbeConfig small_probe(const fs::path& root) {
  PartProbeConfig c;
  c.data = root.string();
  c.backbone.pretrained = kRandomBackbone;
  c.backbone.random_config.arch = "resnet18";
  c.backbone.random_config.stem = nn::ResNetStem::SmallImage;
  c.backbone.random_config.width = 8;
  c.image_size = 32;
  c.batch_size = 16;
  c.workers = 2;
  c.classifier.epochs = 30;
  return c;
}

TEST(PartProbe, PartsSeparableByColourAreNamedAtThePartLevel) {
  TempDir dir("part_probe_colour");
  write_colour_parts_dataset(dir.path(), 12, 8);
  for (int stage : {3, 4}) {
    PartProbeConfig c = small_probe(dir.path());
    c.stage = stage;
    const PartProbeResult r = probe_parts(c);
    ASSERT_TRUE(r.part && r.object);
    EXPECT_EQ(r.grid, stage == 3 ? 8 : 4);
    EXPECT_EQ(r.channels, stage == 3 ? 32 : 64);
    EXPECT_EQ(r.part->classes, 4);
    EXPECT_EQ(r.part->train_rows, 48);  // two parts in each of 24 images, none tiny
    EXPECT_EQ(r.part->val_rows, 32);
    EXPECT_EQ(r.tiny_parts, 0);
    EXPECT_GE(r.part->top1, 95.0) << "stage " << stage;
    EXPECT_DOUBLE_EQ(r.part->chance, 25.0);  // every type has as many val rows
    EXPECT_GE(r.object->top1, 95.0);
    EXPECT_DOUBLE_EQ(r.object->chance, 50.0);
  }
  // Parts must cover 40 cells of layer4's 16 to be probed: every part is skipped, and said so.
  PartProbeConfig c = small_probe(dir.path());
  c.min_part_cells = 40;
  expect_error_contains([&] { probe_parts(c); }, "every part was under --min-part-cells");
  c.level = ProbeLevel::Object;  // the object level needs no mask
  EXPECT_FALSE(probe_parts(c).part.has_value());
}

TEST(PartProbe, RefusesMissingMasksAndUnlistedParts) {
  TempDir dir("part_probe_refusals");
  write_colour_parts_dataset(dir.path(), 2, 1);
  const PartProbeConfig c = small_probe(dir.path());
  fs::remove(dir.path() / "masks" / "val" / "b" / "b0_parts.png");
  expect_error_contains([&] { probe_parts(c); },
                        "no part mask for " + (dir.path() / "val" / "b" / "b0.png").string() + ": expected " +
                            (dir.path() / "masks" / "val" / "b" / "b0_parts.png").string());
  write_bytes(dir.path() / "masks" / "val" / "b" / "b0_parts.png",
              data::encode_png(data::Image(32, 32, 1, 3)));  // id 3: not in the table
  expect_error_contains([&] { probe_parts(c); }, "holds id 3, which");
  fs::remove(dir.path() / "masks" / "parts.txt");
  expect_error_contains([&] { probe_parts(c); }, "no part table");
  PartProbeConfig bad = c;
  bad.stage = 2;
  expect_error_contains([&] { probe_parts(bad); }, "--stage is layer3 or layer4");
}

// The whole probe on CUDA (extraction, region pooling, the classifiers) probes the same rows as on
// the CPU, and as well: the GPU's float sums may flip one borderline row of val/, no more.
TEST(PartProbe, CudaMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  TempDir dir("part_probe_cuda");
  write_colour_parts_dataset(dir.path(), 4, 2);
  PartProbeConfig c = small_probe(dir.path());
  c.classifier.epochs = 10;
  const PartProbeResult cpu = probe_parts(c);
  c.device = Device::cuda();
  const PartProbeResult cuda = probe_parts(c);
  ASSERT_TRUE(cpu.part && cuda.part && cpu.object && cuda.object);
  EXPECT_EQ(cuda.part->train_rows, cpu.part->train_rows);
  EXPECT_EQ(cuda.part->val_rows, cpu.part->val_rows);
  EXPECT_EQ(cuda.tiny_parts, cpu.tiny_parts);
  EXPECT_NEAR(cuda.part->top1, cpu.part->top1, 100.0 / static_cast<double>(cpu.part->val_rows) + 1e-9);
  EXPECT_NEAR(cuda.object->top1, cpu.object->top1, 100.0 / static_cast<double>(cpu.object->val_rows) + 1e-9);
}

// The linear classifier alone: three clusters of noisy one-hot rows are separated perfectly, and the same
// seed gives the same answer.
TEST(PartProbe, TheLinearClassifierSeparatesSeparableRows) {
  std::vector<float> train, test;
  std::vector<int64_t> train_labels, test_labels;
  data::SampleRng rng(3, 0, 0);
  for (int i = 0; i < 60; ++i) {
    const int label = i % 3;
    for (int d = 0; d < 5; ++d) (i < 40 ? train : test).push_back(static_cast<float>((d == label ? 4.0 : 0.0) + rng.uniform(-1, 1)));
    (i < 40 ? train_labels : test_labels).push_back(label);
  }
  const LinearProbeOptions o;
  auto probe = [&](const LinearProbeOptions& options, const std::vector<float>& rows) {
    return linear_probe_top1(Tensor::from_vector(train, {40, 5}), Tensor::from_vector(train_labels, {40}),
                             Tensor::from_vector(rows, {20, 5}), Tensor::from_vector(test_labels, {20}), 3, options,
                             Device::cpu());
  };
  EXPECT_DOUBLE_EQ(probe(o, test), 100.0);
  EXPECT_DOUBLE_EQ(probe(o, test), probe(o, test));  // the same seed, the same classifier
}

}  // namespace
}  // namespace engine::ssl
