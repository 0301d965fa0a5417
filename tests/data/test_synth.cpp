// test_synth.cpp - the synthetic dataset: deterministic pixels, masks that agree with each other,
// every part visible, classes that differ in shape, and the folder layout on disk.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/codec.h"
#include "data/synth.h"
#include "engine/check.h"
#include "temp_dataset.h"

namespace engine::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

SynthOptions small_options(int size = 48) {
  SynthOptions o;
  o.size = size;
  o.seed = 7;
  return o;
}

TEST(Synth, SameArgumentsGiveIdenticalPixels) {
  const SynthOptions o = small_options();
  const SynthSample a = render_synth_sample(o, 3, kSynthTrain, 11);
  const SynthSample b = render_synth_sample(o, 3, kSynthTrain, 11);
  EXPECT_EQ(a.image.pixels, b.image.pixels);
  EXPECT_EQ(a.parts.pixels, b.parts.pixels);
}

TEST(Synth, IndexSplitAndSeedEachChangeTheImage) {
  SynthOptions o = small_options();
  const SynthSample base = render_synth_sample(o, 0, kSynthTrain, 0);
  EXPECT_NE(base.image.pixels, render_synth_sample(o, 0, kSynthTrain, 1).image.pixels);
  EXPECT_NE(base.image.pixels, render_synth_sample(o, 0, kSynthVal, 0).image.pixels);
  o.seed += 1;
  EXPECT_NE(base.image.pixels, render_synth_sample(o, 0, kSynthTrain, 0).image.pixels);
}

TEST(Synth, ImagesAndMasksHaveTheRequestedSize) {
  const SynthSample s = render_synth_sample(small_options(40), 1, kSynthVal, 2);
  EXPECT_EQ(s.image.width, 40);
  EXPECT_EQ(s.image.height, 40);
  EXPECT_EQ(s.image.channels, 3);
  EXPECT_EQ(s.parts.width, 40);
  EXPECT_EQ(s.parts.height, 40);
  EXPECT_EQ(s.parts.channels, 1);
}

// Every class, small and default sizes: the part mask uses exactly the labels 0..parts, each one.
TEST(Synth, EveryPartOfEveryClassIsLabelledAndVisible) {
  const int classes = static_cast<int>(synth_class_names().size());
  for (int size : {48, 96}) {
    for (int c = 0; c < classes; ++c) {
      const int parts = synth_class_part_count(c);
      ASSERT_GE(parts, 2) << synth_class_names()[static_cast<size_t>(c)];
      ASSERT_LE(parts, 4) << synth_class_names()[static_cast<size_t>(c)];
      for (int64_t index = 0; index < 12; ++index) {
        const SynthSample s = render_synth_sample(small_options(size), c, kSynthTrain, index);
        const std::set<uint8_t> labels(s.parts.pixels.begin(), s.parts.pixels.end());
        std::set<uint8_t> expected;
        for (int k = 0; k <= parts; ++k) expected.insert(static_cast<uint8_t>(k));
        EXPECT_EQ(labels, expected) << synth_class_names()[static_cast<size_t>(c)] << " index " << index << " size " << size;
      }
    }
  }
}

TEST(Synth, ForegroundMaskIsWherePartsAreLabelled) {
  const SynthSample s = render_synth_sample(small_options(), 2, kSynthTrain, 5);
  const Image fg = synth_foreground_mask(s.parts);
  ASSERT_EQ(fg.pixels.size(), s.parts.pixels.size());
  for (size_t i = 0; i < fg.pixels.size(); ++i) ASSERT_EQ(fg.pixels[i], s.parts.pixels[i] > 0 ? 255 : 0) << "pixel " << i;
}

// A class is its geometry: with everything else random, the object masks of two classes never
// coincide, and across a few images the share of the object each part takes tells them apart.
TEST(Synth, ClassesDifferInTheShapeOfTheirMasks) {
  const int classes = static_cast<int>(synth_class_names().size());
  auto part_shares = [](int c) {
    std::vector<double> share(5, 0.0);
    for (int64_t index = 0; index < 16; ++index) {
      const SynthSample s = render_synth_sample(small_options(96), c, kSynthTrain, index);
      double object = 0;
      std::vector<double> counts(5, 0.0);
      for (uint8_t v : s.parts.pixels) {
        counts[v] += 1;
        object += v > 0;
      }
      for (size_t k = 1; k < 5; ++k) share[k] += counts[k] / object / 16;
    }
    return share;
  };
  std::vector<std::vector<double>> shares;
  for (int c = 0; c < classes; ++c) shares.push_back(part_shares(c));
  for (int a = 0; a < classes; ++a) {
    for (int b = a + 1; b < classes; ++b) {
      EXPECT_NE(render_synth_sample(small_options(), a, kSynthTrain, 0).parts.pixels,
                render_synth_sample(small_options(), b, kSynthTrain, 0).parts.pixels);
      double distance = 0;
      for (size_t k = 1; k < 5; ++k) distance += std::abs(shares[static_cast<size_t>(a)][k] - shares[static_cast<size_t>(b)][k]);
      EXPECT_GT(distance, 0.05) << synth_class_names()[static_cast<size_t>(a)] << " and "
                                << synth_class_names()[static_cast<size_t>(b)] << " have the same part proportions";
    }
  }
}

// The mean absolute difference between horizontally adjacent background pixels (both outside the
// object): how busy the background is.
double background_busyness(const SynthSample& s) {
  double sum = 0;
  int64_t count = 0;
  for (int y = 0; y < s.image.height; ++y)
    for (int x = 0; x + 1 < s.image.width; ++x) {
      const size_t i = static_cast<size_t>(y) * s.image.width + x;
      if (s.parts.pixels[i] || s.parts.pixels[i + 1]) continue;
      for (size_t c = 0; c < 3; ++c) sum += std::abs(s.image.pixels[i * 3 + c] - s.image.pixels[(i + 1) * 3 + c]);
      count += 3;
    }
  return sum / static_cast<double>(count);
}

TEST(Synth, TheEasyVariantDropsClutterAndBackgroundTextureButKeepsTheObject) {
  SynthOptions hard = small_options(64), easy = small_options(64);
  easy.clutter = 0;
  easy.plain_background = true;
  double hard_busy = 0, easy_busy = 0;
  for (int index = 0; index < 8; ++index) {
    const SynthSample h = render_synth_sample(hard, index % 5, kSynthTrain, index);
    const SynthSample e = render_synth_sample(easy, index % 5, kSynthTrain, index);
    hard_busy += background_busyness(h);
    easy_busy += background_busyness(e);
    EXPECT_LT(background_busyness(e), 9.0) << index;  // the gradient and the sensor noise only
  }
  EXPECT_GT(hard_busy, 2 * easy_busy);
  // A plain background makes the same random draws as a textured one, so the object does not move.
  SynthOptions plain_only = small_options(64);
  plain_only.plain_background = true;
  const SynthSample a = render_synth_sample(small_options(64), 2, kSynthVal, 5);
  const SynthSample b = render_synth_sample(plain_only, 2, kSynthVal, 5);
  EXPECT_EQ(a.parts.pixels, b.parts.pixels);
  easy.clutter = 65;
  EXPECT_THROW(write_synth_dataset("/nonexistent/never", easy), Error);
}

TEST(Synth, RefusesAClassIndexWithoutATemplate) {
  const int classes = static_cast<int>(synth_class_names().size());
  EXPECT_THROW(render_synth_sample(small_options(), classes, kSynthTrain, 0), Error);
  EXPECT_THROW(render_synth_sample(small_options(), -1, kSynthTrain, 0), Error);
}

// --- the dataset on disk

std::vector<uint8_t> file_bytes(const fs::path& p) { return read_file_bytes(p.string()); }

SynthOptions tiny_dataset_options() {
  SynthOptions o;
  o.classes = 2;
  o.train_per_class = 3;
  o.val_per_class = 2;
  o.size = 48;
  o.seed = 3;
  o.threads = 2;
  return o;
}

TEST(Synth, WritesImageFoldersMasksAndReadme) {
  TempDir dir("synth");
  const fs::path out = dir.path() / "ds";
  const SynthOptions o = tiny_dataset_options();
  write_synth_dataset(out.string(), o);
  const std::vector<std::string> names = synth_class_names();
  int images = 0;
  for (auto [split, count] : {std::pair{"train", 3}, std::pair{"val", 2}}) {
    for (int c = 0; c < 2; ++c) {
      const std::string& name = names[static_cast<size_t>(c)];
      EXPECT_EQ(std::distance(fs::directory_iterator(out / split / name), fs::directory_iterator{}), count);
      for (int i = 0; i < count; ++i) {
        const std::string stem = fmt::format("{}_{:05d}", name, i);
        const Image image = read_image((out / split / name / (stem + ".jpg")).string());
        EXPECT_EQ(image.width, 48);
        EXPECT_EQ(image.height, 48);
        const Image fg = read_image((out / "masks" / split / name / (stem + "_fg.png")).string());
        const Image parts = read_image((out / "masks" / split / name / (stem + "_parts.png")).string());
        ASSERT_EQ(fg.width, 48);
        ASSERT_EQ(parts.width, 48);
        // PNGs are lossless: the part labels read back exactly as rendered, and fg = 255 * (parts > 0).
        const SynthSample rendered = render_synth_sample(o, c, std::string(split) == "train" ? kSynthTrain : kSynthVal, i);
        for (int y = 0; y < 48; ++y)
          for (int x = 0; x < 48; ++x) {
            ASSERT_EQ(parts.at(x, y), rendered.parts.at(x, y)) << stem << " at " << x << "," << y;
            ASSERT_EQ(fg.at(x, y), parts.at(x, y) > 0 ? 255 : 0) << stem << " at " << x << "," << y;
          }
        ++images;
      }
    }
  }
  EXPECT_EQ(images, 10);
  std::ifstream readme(out / "README.txt");
  std::string text((std::istreambuf_iterator<char>(readme)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("--classes 2 --train-per-class 3 --val-per-class 2 --size 48 --clutter 8 --seed 3"), std::string::npos) << text;
  EXPECT_NE(text.find(names[0]), std::string::npos) << text;
}

TEST(Synth, TheThreadCountDoesNotChangeTheFiles) {
  TempDir dir("synth_threads");
  SynthOptions o = tiny_dataset_options();
  o.threads = 1;
  write_synth_dataset((dir.path() / "one").string(), o);
  o.threads = 3;
  write_synth_dataset((dir.path() / "three").string(), o);
  int compared = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir.path() / "one")) {
    if (!entry.is_regular_file()) continue;
    const fs::path twin = dir.path() / "three" / fs::relative(entry.path(), dir.path() / "one");
    ASSERT_TRUE(fs::exists(twin)) << twin;
    EXPECT_EQ(file_bytes(entry.path()), file_bytes(twin)) << twin;
    ++compared;
  }
  EXPECT_EQ(compared, 2 + 3 * 10);  // README and masks/parts.txt, then an image and two masks per sample
}

TEST(Synth, RefusesAnExistingDatasetUnlessForcedAndReplacesItWhenForced) {
  TempDir dir("synth_force");
  const fs::path out = dir.path() / "ds";
  SynthOptions o = tiny_dataset_options();
  o.train_per_class = 4;
  write_synth_dataset(out.string(), o);
  o.train_per_class = 3;
  EXPECT_THROW(write_synth_dataset(out.string(), o), Error);
  o.force = true;
  write_synth_dataset(out.string(), o);
  // The fourth image of the earlier run is gone: no stale files survive --force.
  const std::string name = synth_class_names()[0];
  EXPECT_FALSE(fs::exists(out / "train" / name / (name + "_00003.jpg")));
  EXPECT_TRUE(fs::exists(out / "train" / name / (name + "_00002.jpg")));
}

// Not even into the train/ folder of another dataset, whose class folders it would join.
TEST(Synth, WritesOnlyIntoANewOrEmptyFolderAndForceLeavesOthersAlone) {
  TempDir dir("synth_foreign");
  fs::create_directories(dir.path() / "cats");
  SynthOptions o = tiny_dataset_options();
  EXPECT_THROW(write_synth_dataset(dir.path().string(), o), Error);
  o.force = true;
  try {
    write_synth_dataset(dir.path().string(), o);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no README.txt written by `moco synth`"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(dir.path() / "cats"));
  EXPECT_FALSE(fs::exists(dir.path() / "train"));
  fs::create_directories(dir.path() / "empty");
  write_synth_dataset((dir.path() / "empty").string(), tiny_dataset_options());
  EXPECT_TRUE(fs::exists(dir.path() / "empty" / "README.txt"));
}

TEST(Synth, RefusesClassCountsWithoutTemplates) {
  TempDir dir("synth_options");
  SynthOptions o = tiny_dataset_options();
  o.classes = static_cast<int>(synth_class_names().size()) + 1;
  try {
    write_synth_dataset((dir.path() / "ds").string(), o);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--classes must be between 2 and"), std::string::npos) << e.what();
  }
  o.classes = 1;
  EXPECT_THROW(write_synth_dataset((dir.path() / "ds").string(), o), Error);
}

}  // namespace
}  // namespace engine::data
