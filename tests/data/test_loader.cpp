// test_loader.cpp - the threaded loader: the same batches whatever the thread count, the sampler's
// order and sharding, drop_last, and undecodable files skipped and counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "data/codec.h"
#include "data/loader.h"
#include "temp_dataset.h"
#include "tests/common/test_helpers.h"

namespace engine::data {
namespace {

using testing::TempDir;

struct Snapshot {  // a batch copied out of the loader's slots
  std::vector<std::vector<float>> views;
  std::vector<int64_t> labels, indices;
  std::vector<int32_t> boxes;
  bool operator==(const Snapshot&) const = default;
};

std::vector<Snapshot> run_epoch(Loader& loader, int64_t epoch, int64_t first_batch = 0) {
  loader.start_epoch(epoch, first_batch);
  std::vector<Snapshot> out;
  while (auto batch = loader.next()) {
    Snapshot s;
    for (const Tensor& v : batch->views) s.views.push_back(v.to_vector<float>());
    s.labels = batch->labels.to_vector<int64_t>();
    s.indices = batch->indices.to_vector<int64_t>();
    s.boxes = batch->boxes.to_vector<int32_t>();
    out.push_back(std::move(s));
  }
  return out;
}

LoaderOptions small_options(int workers, int batch) {
  LoaderOptions o;
  o.batch_size = batch;
  o.workers = workers;
  o.seed = 42;
  return o;
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_jpeg_folder(dir_.path() / "images", 3, 7, 48, 40);
    dataset_ = std::make_shared<ImageFolder>((dir_.path() / "images").string());
  }
  TempDir dir_{"loader"};
  std::shared_ptr<ImageFolder> dataset_;
};

TEST_F(LoaderTest, SameBatchesWhateverTheThreadCount) {
  const AugmentConfig aug = mocov2_augment(24);
  LoaderOptions one = small_options(1, 4);
  LoaderOptions many = small_options(3, 4);
  many.prefetch = 5;
  Loader a(dataset_, aug, one), b(dataset_, aug, many);
  for (int64_t epoch : {0, 1}) {
    const std::vector<Snapshot> sa = run_epoch(a, epoch), sb = run_epoch(b, epoch);
    ASSERT_EQ(sa.size(), 5u);  // 21 images, batches of 4, drop_last
    EXPECT_TRUE(sa == sb) << "epoch " << epoch;
  }
  // Different epochs shuffle and augment differently.
  EXPECT_FALSE(run_epoch(a, 0) == run_epoch(a, 1));
}

TEST_F(LoaderTest, StartingMidEpochGivesTheRemainingBatchesUnchanged) {
  const AugmentConfig aug = mocov2_augment(24);
  Loader whole(dataset_, aug, small_options(2, 4)), resumed(dataset_, aug, small_options(2, 4));
  const std::vector<Snapshot> all = run_epoch(whole, 1);
  ASSERT_EQ(all.size(), 5u);  // 21 images, batches of 4, drop_last
  const std::vector<Snapshot> tail = run_epoch(resumed, 1, 3);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_TRUE(tail[0] == all[3] && tail[1] == all[4]);
  EXPECT_TRUE(run_epoch(resumed, 1, 5).empty());
  EXPECT_THROW(resumed.start_epoch(1, 6), Error);
}

TEST_F(LoaderTest, BatchesHoldTheRightLabelsShapesAndBoxes) {
  Loader loader(dataset_, mocov2_augment(24), small_options(2, 4));
  loader.start_epoch(0);
  auto batch = loader.next();
  ASSERT_TRUE(batch.has_value());
  ASSERT_EQ(batch->views.size(), 2u);
  EXPECT_EQ(batch->views[0].shape(), (Shape{4, 3, 24, 24}));
  EXPECT_FALSE(batch->views[0].to_vector<float>() == batch->views[1].to_vector<float>());  // two draws
  const auto labels = batch->labels.to_vector<int64_t>(), indices = batch->indices.to_vector<int64_t>();
  const auto boxes = batch->boxes.to_vector<int32_t>();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(labels[i], (*dataset_)[indices[i]].label);
    const Image image = read_image((*dataset_)[indices[i]].path);
    for (int v = 0; v < 2; ++v) {
      const int32_t* b = &boxes[(i * 2 + v) * 4];
      EXPECT_TRUE(b[0] >= 0 && b[1] >= 0 && b[0] + b[2] <= image.height && b[1] + b[3] <= image.width);
    }
  }
  // Normalised values stay within what (0..1 - mean) / std allows.
  for (float x : batch->views[0].to_vector<float>()) ASSERT_TRUE(x >= -2.2f && x <= 2.7f) << x;
}

TEST_F(LoaderTest, AnEpochVisitsEveryImageOnceAndRanksSplitIt) {
  LoaderOptions options = small_options(2, 5);
  options.drop_last = false;
  Loader loader(dataset_, eval_transform(16), options);
  std::multiset<int64_t> seen;
  const std::vector<Snapshot> batches = run_epoch(loader, 3);
  ASSERT_EQ(batches.size(), 5u);
  EXPECT_EQ(batches.back().indices.size(), 1u);  // 21 = 4 * 5 + 1
  for (const Snapshot& s : batches) seen.insert(s.indices.begin(), s.indices.end());
  EXPECT_EQ(seen.size(), 21u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 21u);

  // Two ranks of 4: each global batch of 8 is the one-process batch of 8, rank 0 its first half and
  // rank 1 its second; the short last global batch (5 images) gives rank 0 four and rank 1 one.
  LoaderOptions single = small_options(1, 8);
  const std::vector<int64_t> whole = Loader(dataset_, eval_transform(16), single).epoch_order(3);
  std::vector<std::vector<int64_t>> orders;
  for (int rank : {0, 1}) {
    LoaderOptions o = small_options(1, 4);
    o.rank = rank, o.world_size = 2;
    Loader shard(dataset_, eval_transform(16), o);
    EXPECT_EQ(shard.samples_per_epoch(), rank == 0 ? 12 : 9);
    EXPECT_EQ(shard.batches_per_epoch(), 2);  // drop_last drops the short global batch on both
    orders.push_back(shard.epoch_order(3));
  }
  ASSERT_EQ(whole.size(), 21u);
  for (size_t g = 0; g < 3; ++g)
    for (size_t i = 0; i < 8 && g * 8 + i < 21; ++i)
      EXPECT_EQ(orders[i / 4][g * 4 + i % 4], whole[g * 8 + i]) << "global batch " << g << ", image " << i;
}

TEST_F(LoaderTest, UndecodableFilesAreSkippedCountedAndReplaced) {
  const auto cls = dir_.path() / "images" / "class1";
  testing::write_bytes(cls / "empty.jpg", {});
  const std::vector<uint8_t> good = read_file_bytes((cls / "img0.jpg").string());
  testing::write_bytes(cls / "truncated.jpg", std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  testing::write_bytes(cls / "random.JPEG", std::vector<uint8_t>(3000, 0x5a));
  auto dataset = std::make_shared<ImageFolder>((dir_.path() / "images").string());
  ASSERT_EQ(dataset->size(), 24);
  std::set<int64_t> bad;
  for (int64_t i = 0; i < dataset->size(); ++i)
    if ((*dataset)[i].path.find("img") == std::string::npos) bad.insert(i);
  ASSERT_EQ(bad.size(), 3u);
  for (int workers : {1, 3}) {
    Loader loader(dataset, mocov2_augment(16), small_options(workers, 6));
    for (int64_t epoch : {0, 1}) {
      loader.start_epoch(epoch);
      int batches = 0;
      int64_t replaced = 0;
      while (auto batch = loader.next()) {
        ++batches;
        replaced += batch->skipped;
        EXPECT_EQ(batch->size(), 6);  // full despite the bad files
        for (int64_t i : batch->indices.to_vector<int64_t>()) EXPECT_EQ(bad.count(i), 0u) << "bad index " << i;
      }
      EXPECT_EQ(batches, 4);
      EXPECT_EQ(loader.skipped_this_epoch(), 3) << "workers " << workers << " epoch " << epoch;
      EXPECT_GE(replaced, 3);
    }
  }
}

TEST_F(LoaderTest, HoldingEverySlotIsAClearErrorNotADeadlock) {
  LoaderOptions options = small_options(1, 2);
  options.prefetch = 2;
  Loader loader(dataset_, eval_transform(16), options);
  loader.start_epoch(0);
  auto first = loader.next(), second = loader.next();
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("held by batches"), std::string::npos) << e.what();
  }
  first.reset();
  EXPECT_TRUE(loader.next().has_value());  // a released slot is reused
}

// An image of one pixel goes through every transform: the random crop falls back to the whole
// image and every output pixel is that pixel's colour (normalised); nothing divides by zero.
TEST(Transforms, AOnePixelImageFillsEveryViewWithItsColour) {
  Image pixel(1, 1, 3);
  pixel.pixels = {200, 100, 50};
  const std::vector<uint8_t> bytes = encode_png(pixel);
  for (const AugmentConfig& config : {mocov2_augment(16), eval_transform(16), plain_transform(16)}) {
    std::vector<float> out(3 * 16 * 16, -1000.0f);
    float* outs[1] = {out.data()};
    SampleRng rng(1, 0, 0);
    make_views(bytes, "one_pixel.png", config, 1, true, rng, outs);
    for (int c = 0; c < 3; ++c)
      for (int i = 1; i < 16 * 16; ++i)
        ASSERT_EQ(out[c * 256 + i], out[c * 256]) << "channel " << c << " is not flat at " << i;
    for (float v : out) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(FastDecode, PicksAReducedDecodeOnlyWhenCropsAllowAndStaysClose) {
  const std::vector<uint8_t> bytes = read_file_bytes(std::string(ENGINE_TEST_FIXTURES) + "/data/big.jpg");
  const AugmentConfig config = mocov2_augment(32);
  std::vector<float> exact(2 * 3 * 32 * 32), fast(exact.size());
  float* exact_outs[2] = {exact.data(), exact.data() + 3 * 32 * 32};
  float* fast_outs[2] = {fast.data(), fast.data() + 3 * 32 * 32};
  SampleRng rng_a(5, 0, 1), rng_b(5, 0, 1);
  const SampleViews a = make_views(bytes, "big.jpg", config, 2, false, rng_a, exact_outs);
  const SampleViews b = make_views(bytes, "big.jpg", config, 2, true, rng_b, fast_outs);
  EXPECT_EQ(a.reduce, 1);
  EXPECT_GE(b.reduce, 2);  // every crop of a 320x240 image is at least 107 pixels wide: 1/2 still covers 32
  for (int v = 0; v < 2; ++v) EXPECT_EQ(a.views[v].box, b.views[v].box);  // the same draws
  double diff = 0;
  for (size_t i = 0; i < exact.size(); ++i) diff += std::abs(exact[i] - fast[i]);
  EXPECT_GT(diff, 0.0);                          // pixels do change slightly...
  EXPECT_LT(diff / exact.size(), 0.1);           // ...by a few levels (0.1 is about 6/255 after normalisation)
  // A crop that must be upsampled keeps the full decode.
  EXPECT_EQ(fast_decode_reduction(mocov2_augment(224), 320, 240, a.views), 1);
}

TEST_F(LoaderTest, CudaBatchesEqualCpuBatchesAcrossSlotReuse) {
  SKIP_WITHOUT_CUDA();
  // Three epochs through a 2-slot ring: every slot is rewritten after its asynchronous copy, so a
  // missing fence would show up as a batch holding the next batch's pixels. The GPU batches are
  // all held to the epoch's end, more than the ring has slots: each slot then moves on to new
  // device memory, and the held batches must still hold their own pixels at the end.
  LoaderOptions cpu = small_options(2, 4), gpu = small_options(2, 4);
  cpu.prefetch = gpu.prefetch = 2;
  gpu.device = Device::cuda(0);
  Loader a(dataset_, mocov2_augment(24), cpu), b(dataset_, mocov2_augment(24), gpu);
  for (int64_t epoch : {0, 1, 2}) {
    a.start_epoch(epoch);
    b.start_epoch(epoch);
    std::vector<Batch> held;  // keep the GPU batches alive while the loader refills the slots
    std::vector<std::vector<float>> pixels;  // the CPU batches' first views, in order
    while (auto expected = a.next()) {
      auto got = b.next();
      ASSERT_TRUE(got.has_value());
      EXPECT_TRUE(got->views[0].device().is_cuda());
      for (size_t v = 0; v < 2; ++v) EXPECT_EQ(got->views[v].to_vector<float>(), expected->views[v].to_vector<float>());
      EXPECT_EQ(got->labels.to_vector<int64_t>(), expected->labels.to_vector<int64_t>());
      pixels.push_back(expected->views[0].to_vector<float>());
      held.push_back(std::move(*got));
    }
    EXPECT_FALSE(b.next().has_value());
    ASSERT_GT(held.size(), 2u);
    for (size_t i = 0; i < held.size(); ++i) EXPECT_EQ(held[i].views[0].to_vector<float>(), pixels[i]) << "batch " << i;
  }
}

TEST_F(LoaderTest, ACudaLoaderWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "this machine has a GPU";
  LoaderOptions options = small_options(1, 4);
  options.device = Device::cuda(0);
  try {
    Loader loader(dataset_, eval_transform(16), options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Loader"), std::string::npos) << e.what();
  }
}

TEST_F(LoaderTest, RefusesADatasetSmallerThanOneBatch) {
  EXPECT_THROW(Loader(dataset_, eval_transform(16), small_options(1, 64)), Error);
}

}  // namespace
}  // namespace engine::data
