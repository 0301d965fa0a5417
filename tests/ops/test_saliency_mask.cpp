// test_saliency_mask.cpp - the fused masking against METHOD.md 5 and the count table of 12.4: over
// many seeds, for each strategy and mode, the masked cells are exactly the drawn counts, neg masks
// touch foreground only, untouched pixels are bit-identical, the fills are what the strategy says,
// the focal boxes have the right size, the published code's shared noise (O6) is shared, and CUDA
// draws the very same masks as the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/check.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// ---- METHOD.md 12.4: (N_FG, N_BG) masked for a given m and |FG|, hp, the published code's slicing ----
TEST(SaliencyMaskCounts, HpTableOfMethod12_4WithQuirks) {
  const std::vector<int64_t> fg_counts = {13, 20, 30, 45, 47, 48, 49};
  struct Row {
    MaskMode mode;
    double m;
    std::vector<std::pair<int64_t, int64_t>> expected;
  };
  const MaskMode pos = MaskMode::Positive, neg = MaskMode::Negative;
  const std::vector<Row> table = {
      {pos, 0.05, {{1, 1}, {1, 1}, {2, 0}, {2, 0}, {2, 0}, {2, 0}, {2, 0}}},
      {pos, 0.10, {{1, 3}, {2, 2}, {3, 1}, {4, 0}, {5, 1}, {5, 0}, {5, 0}}},
      {pos, 0.15, {{2, 5}, {3, 4}, {4, 3}, {7, 0}, {7, 0}, {7, 0}, {7, 0}}},
      {pos, 0.20, {{3, 6}, {4, 5}, {6, 3}, {9, 0}, {9, 0}, {10, 0}, {10, 0}}},
      {pos, 0.25, {{3, 9}, {5, 7}, {8, 4}, {11, 1}, {12, 0}, {12, 0}, {12, 0}}},
      {neg, 0.40, {{5, 0}, {8, 0}, {12, 0}, {18, 0}, {19, 0}, {19, 0}, {20, 0}}},
      {neg, 0.55, {{7, 0}, {11, 0}, {17, 0}, {25, 0}, {26, 0}, {26, 0}, {27, 0}}},
      {neg, 0.70, {{9, 0}, {14, 0}, {21, 0}, {27, 0}, {27, 0}, {27, 0}, {27, 0}}},
  };
  for (const Row& row : table)
    for (size_t i = 0; i < fg_counts.size(); ++i) {
      const int64_t fg = fg_counts[i];
      const MaskCounts taken =
          mask_counts_taken(mask_counts_wanted(MaskFill::Noise, row.mode, row.m, fg, 49, true), fg, 49, true);
      EXPECT_EQ(taken.fg_cells, row.expected[i].first) << "m " << row.m << ", |FG| " << fg;
      EXPECT_EQ(taken.bg_cells, row.expected[i].second) << "m " << row.m << ", |FG| " << fg;
    }
}

TEST(SaliencyMaskCounts, CleanRulesForO3AndO4AndNoCapForBlurAndMean) {
  // O3: m 0.10, |FG| 47 wants N_BG = -1; the published code then masks 1 of the 2 BG cells, the
  // clean rule none. O4: |FG| 48 leaves one BG cell, which the clean rule may mask when asked.
  const MaskCounts want47 = mask_counts_wanted(MaskFill::Noise, MaskMode::Positive, 0.10, 47, 49, false);
  EXPECT_EQ(want47.fg_cells, 5);
  EXPECT_EQ(want47.bg_cells, -1);
  EXPECT_EQ(mask_counts_taken(want47, 47, 49, false).bg_cells, 0);
  EXPECT_EQ(mask_counts_taken(want47, 47, 49, true).bg_cells, 1);
  const MaskCounts want48 = mask_counts_wanted(MaskFill::Noise, MaskMode::Positive, 0.25, 48, 49, false);
  EXPECT_EQ(want48.fg_cells, 12);
  EXPECT_EQ(mask_counts_taken({11, 1}, 48, 49, false).bg_cells, 1);
  EXPECT_EQ(mask_counts_taken({11, 1}, 48, 49, true).bg_cells, 0);
  // METHOD.md 12.4's note: blur and mean have no cap, so neg 0.70 with |FG| 49 masks round(34.3) = 34.
  for (MaskFill fill : {MaskFill::Blur, MaskFill::Mean}) {
    const MaskCounts c = mask_counts_wanted(fill, MaskMode::Negative, 0.70, 49, 49, false);
    EXPECT_EQ(c.fg_cells, 34);
    EXPECT_EQ(c.bg_cells, 0);
  }
}

// ---- the op over many seeds ----

struct MaskSetup {
  MaskFill fill;
  MaskMode mode;
  bool quirks;
};

std::string describe(const MaskSetup& s) {
  return fmt::format("{} {}{}", s.fill == MaskFill::Noise ? "hp" : (s.fill == MaskFill::Blur ? "blur" : "mean"),
                     s.mode == MaskMode::Positive ? "pos" : "neg", s.quirks ? " quirks" : "");
}

// Foreground maps with |FG| spread over [13, 49] (the range the rule can give), cells at random.
Tensor random_foreground(int64_t N, int64_t grid, uint64_t seed) {
  const int64_t cells = grid * grid;
  Generator gen(seed, 77);
  std::vector<uint8_t> fg(static_cast<size_t>(N * cells), 0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t count = cells <= 13 ? cells : 13 + (n * 7 + static_cast<int64_t>(seed)) % (cells - 12);
    std::vector<int64_t> order(static_cast<size_t>(cells));
    for (int64_t i = 0; i < cells; ++i) order[static_cast<size_t>(i)] = i;
    shuffle(order, gen);
    for (int64_t i = 0; i < count; ++i) fg[static_cast<size_t>(n * cells + order[static_cast<size_t>(i)])] = 1;
  }
  return Tensor::from_vector(fg, {N, grid, grid});
}

// Views with values in [5, 6]: noise N(0, 0.18^2) never lands there, so a replaced pixel shows.
Tensor views(int64_t N, int64_t H, int64_t W, uint64_t seed) {
  Tensor x = Tensor::empty({N, 3, H, W});
  Generator gen(seed, 5);
  uniform_(x, gen, 5.0, 6.0);
  return x;
}

SaliencyMaskOptions options_of(const MaskSetup& s, uint64_t seed, uint64_t stream, int64_t per_group) {
  SaliencyMaskOptions o;
  o.fill = s.fill;
  o.mode = s.mode;
  o.seed = seed;
  o.stream = stream;
  o.images_per_group = per_group;
  o.reference_quirks = s.quirks;
  return o;
}

SaliencyMaskParams params_of(const MaskSetup& s, int64_t N, int64_t H, int64_t W, int64_t grid, uint64_t seed,
                             uint64_t stream, int64_t per_group) {
  return saliency_mask_params(N, H, W, grid, options_of(s, seed, stream, per_group));
}

const std::vector<MaskSetup>& all_setups() {
  static const std::vector<MaskSetup> setups = [] {
    std::vector<MaskSetup> v;
    for (MaskFill fill : {MaskFill::Noise, MaskFill::Blur, MaskFill::Mean})
      for (MaskMode mode : {MaskMode::Positive, MaskMode::Negative})
        for (bool quirks : {false, true}) v.push_back({fill, mode, quirks});
    return v;
  }();
  return setups;
}

// Checks one masked batch image by image against its plan.
void check_batch(const MaskSetup& s, const Tensor& x, const Tensor& fg, const Tensor& blurred,
                    const SaliencyMaskResult& r, const SaliencyMaskParams& p) {
  const int64_t N = p.N, H = p.H, W = p.W, G = p.grid, G2 = G * G;
  const std::vector<float> in = x.to_vector<float>(), out = r.masked.to_vector<float>();
  const std::vector<float> blur = blurred.defined() ? blurred.to_vector<float>() : std::vector<float>();
  const std::vector<uint8_t> fgs = fg.to_vector<uint8_t>(), cells = r.cells.to_vector<uint8_t>(),
                             focal = r.focal.to_vector<uint8_t>();
  const MaskModeConstants k = mask_mode_constants(s.mode);
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* f = fgs.data() + n * G2;
    const MaskImagePlan plan = mask_image_plan(p, n, f);
    const std::string where = fmt::format("{}, image {}", describe(s), n);
    EXPECT_EQ(focal[static_cast<size_t>(n)], plan.focal ? 1 : 0) << where;
    EXPECT_GE(plan.ratio, k.ratio_low) << where;
    EXPECT_LT(plan.ratio, k.ratio_high) << where;
    if (s.fill != MaskFill::Noise) {
      EXPECT_FALSE(plan.focal) << where;
    }
    const MaskCounts taken = mask_counts_taken(mask_counts_wanted(s.fill, s.mode, plan.ratio, plan.fg, G2, s.quirks),
                                               plan.fg, G2, s.quirks);
    // The grid decisions: per channel exactly the counts, FG only in neg mode.
    for (int64_t c = 0; c < 3; ++c) {
      int64_t masked_fg = 0, masked_bg = 0;
      for (int64_t cell = 0; cell < G2; ++cell) {
        const bool m = cells[static_cast<size_t>((n * 3 + c) * G2 + cell)];
        if (plan.focal) {
          EXPECT_FALSE(m) << where;
          continue;
        }
        (f[cell] ? masked_fg : masked_bg) += m;
        // One set of cells for all channels unless hp drew "channel".
        if (!plan.channelwise && c > 0) {
          EXPECT_EQ(m, cells[static_cast<size_t>(n * 3 * G2 + cell)]) << where;
        }
      }
      if (plan.focal) continue;
      EXPECT_EQ(masked_fg, taken.fg_cells) << where << ", channel " << c;
      EXPECT_EQ(masked_bg, taken.bg_cells) << where << ", channel " << c;
      if (s.mode == MaskMode::Negative) {
        EXPECT_EQ(masked_bg, 0) << where;
      }
      const MaskCounts wanted = mask_counts_wanted(s.fill, s.mode, plan.ratio, plan.fg, G2, s.quirks);
      const int64_t bg = G2 - plan.fg;
      if (s.mode == MaskMode::Positive && wanted.bg_cells >= 0 && bg != 1 && bg >= wanted.bg_cells &&
          plan.fg >= wanted.fg_cells) {
        EXPECT_EQ(masked_fg + masked_bg, static_cast<int64_t>(std::floor(G2 * plan.ratio + 1e-9))) << where;
      }
    }
    // The pixels: replaced exactly where the plan says, unchanged elsewhere, with the right fill.
    int64_t replaced = 0;
    for (int64_t c = 0; c < 3; ++c) {
      double mean = 0;
      for (int64_t i = 0; i < H * W; ++i) mean += in[static_cast<size_t>((n * 3 + c) * H * W + i)];
      mean /= static_cast<double>(H * W);
      for (int64_t y = 0; y < H; ++y)
        for (int64_t xx = 0; xx < W; ++xx) {
          const size_t i = static_cast<size_t>(((n * 3 + c) * H + y) * W + xx);
          const bool expect_replaced =
              pixel_replaced(p, plan, cells.data() + n * 3 * G2, c, cell_of(y, H, G), cell_of(xx, W, G), y, xx);
          if (!expect_replaced) {
            ASSERT_EQ(out[i], in[i]) << where << " pixel (" << c << ", " << y << ", " << xx << ") changed";
            continue;
          }
          ++replaced;
          if (s.fill == MaskFill::Noise) {
            ASSERT_LT(std::fabs(out[i]), 7 * k.noise_std) << where;
          } else if (s.fill == MaskFill::Blur) {
            ASSERT_EQ(out[i], blur[i]) << where;
          } else {
            ASSERT_NEAR(out[i], mean, 1e-5) << where;
          }
        }
    }
    if (plan.focal) {
      const int64_t box = plan.box_h * plan.box_w * 3;
      EXPECT_EQ(replaced, s.mode == MaskMode::Positive ? 3 * H * W - box : box) << where;
      EXPECT_EQ(plan.box_h, static_cast<int64_t>(std::nearbyint(k.focal_side_224 * H / 224.0))) << where;
    }
  }
}

TEST(SaliencyMask, ManySeedsEveryStrategyAndModeMasksExactlyThePlannedCells) {
  const int64_t N = 24, H = 28, W = 28, grid = 7;
  for (const MaskSetup& s : all_setups())
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      const Tensor x = views(N, H, W, seed);
      const Tensor fg = random_foreground(N, grid, seed);
      const Tensor blurred = s.fill == MaskFill::Blur ? gaussian_blur(x, 5, 2.0) : Tensor();
      const SaliencyMaskResult r = saliency_mask(x, fg, blurred, options_of(s, seed, 40, 8));
      check_batch(s, x, fg, blurred, r, params_of(s, N, H, W, grid, seed, 40, 8));
      if (::testing::Test::HasFatalFailure()) return;
    }
}

TEST(SaliencyMask, UnevenCellsAndTheSmallImageGrid) {
  // 30 x 26 on a 4 x 4 grid: cells of 7-8 rows and 6-7 columns tile the image; and 32 px at
  // grid 4, the small-stem ResNet's final map.
  for (const auto& [H, W, grid] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{30, 26, 4}, {32, 32, 4}})
    for (const MaskSetup& s : all_setups()) {
      const Tensor x = views(16, H, W, 3);
      const Tensor fg = random_foreground(16, grid, 3);
      const Tensor blurred = s.fill == MaskFill::Blur ? gaussian_blur(x, 5, 2.0) : Tensor();
      const SaliencyMaskResult r = saliency_mask(x, fg, blurred, options_of(s, 9, 0, 0));
      check_batch(s, x, fg, blurred, r, params_of(s, 16, H, W, grid, 9, 0, 0));
    }
}

TEST(SaliencyMask, CellsTileTheImage) {
  for (int64_t extent : {7, 26, 30, 32, 224})
    for (int64_t grid : {1, 4, 7}) {
      if (grid > extent) continue;
      for (int64_t px = 0; px < extent; ++px) {
        const int64_t cell = cell_of(px, extent, grid);
        ASSERT_GE(px, cell_start(cell, extent, grid));
        ASSERT_LT(px, cell_start(cell + 1, extent, grid));
      }
    }
  EXPECT_EQ(cell_start(3, 224, 7), 96);  // the reference's 32-pixel patches
  EXPECT_EQ(max_cell_side(224, 7), 32);
}

TEST(SaliencyMask, DrawFrequenciesAreTheSpecs) {
  // hp: focal with probability 0.2; in the grid branch spatial with 0.3; m uniform in its range;
  // every FG cell equally likely to be chosen.
  const int64_t N = 1000, grid = 7;
  SaliencyMaskParams p = params_of({MaskFill::Noise, MaskMode::Positive, false}, N, 224, 224, grid, 11, 3, 0);
  std::vector<uint8_t> fg(49, 0);
  for (int64_t i = 0; i < 49; ++i) fg[static_cast<size_t>(i)] = i % 4 != 0;  // 36 FG cells
  int64_t focal = 0, spatial = 0, grid_images = 0;
  double ratio_sum = 0;
  std::vector<int64_t> chosen(49, 0);
  for (int64_t n = 0; n < N; ++n) {
    const MaskImagePlan plan = mask_image_plan(p, n, fg.data());
    ratio_sum += plan.ratio;
    if (plan.focal) {
      ++focal;
      continue;
    }
    ++grid_images;
    spatial += !plan.channelwise;
    std::vector<uint32_t> keys(49);
    for (int64_t cell = 0; cell < 49; ++cell) keys[static_cast<size_t>(cell)] = cell_key(p, plan, n, 0, cell);
    for (int64_t cell = 0; cell < 49; ++cell) chosen[static_cast<size_t>(cell)] += cell_masked(plan, 49, keys.data(), cell, fg.data());
  }
  EXPECT_NEAR(static_cast<double>(focal) / N, 0.2, 0.04);
  EXPECT_NEAR(static_cast<double>(spatial) / static_cast<double>(grid_images), 0.3, 0.05);
  EXPECT_NEAR(ratio_sum / N, 0.15, 0.01);
  // Each of the 36 FG cells is chosen in about the same share of images (no position bias).
  int64_t lo = 1 << 30, hi = 0;
  for (int64_t cell = 0; cell < 49; ++cell)
    if (fg[static_cast<size_t>(cell)]) {
      lo = std::min(lo, chosen[static_cast<size_t>(cell)]);
      hi = std::max(hi, chosen[static_cast<size_t>(cell)]);
    }
  EXPECT_GT(lo, 0);
  EXPECT_LT(static_cast<double>(hi) / static_cast<double>(lo), 1.8) << "lo " << lo << ", hi " << hi;
}

// The published code's O6: one spatial patch, one channel patch and one neg focal block per
// virtual GPU, pasted everywhere; the clean default draws fresh noise.
TEST(SaliencyMask, QuirksShareOneNoisePatchPerVirtualGpuAndCleanDoesNot) {
  const int64_t N = 32, H = 28, W = 28, grid = 7, per_group = 8, side = 4;  // cells of 4 x 4
  for (bool quirks : {true, false}) {
    const MaskSetup s{MaskFill::Noise, MaskMode::Positive, quirks};
    const Tensor x = views(N, H, W, 2);
    const Tensor fg = random_foreground(N, grid, 2);
    const SaliencyMaskResult r = saliency_mask(x, fg, Tensor(), options_of(s, 5, 0, per_group));
    const std::vector<float> out = r.masked.to_vector<float>();
    const std::vector<uint8_t> cells = r.cells.to_vector<uint8_t>(), focal = r.focal.to_vector<uint8_t>();
    const SaliencyMaskParams p = params_of(s, N, H, W, grid, 5, 0, per_group);
    // patches[(group, variant, channel)] = the distinct contents of masked cells seen.
    std::map<std::tuple<int64_t, int, int64_t>, std::set<std::vector<float>>> patches;
    int64_t masked_cells = 0;
    for (int64_t n = 0; n < N; ++n) {
      if (focal[static_cast<size_t>(n)]) continue;
      const MaskImagePlan plan = mask_image_plan(p, n, fg.to_vector<uint8_t>().data() + n * 49);
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t cell = 0; cell < 49; ++cell) {
          if (!cells[static_cast<size_t>((n * 3 + c) * 49 + cell)]) continue;
          std::vector<float> content;
          for (int64_t dy = 0; dy < side; ++dy)
            for (int64_t dx = 0; dx < side; ++dx)
              content.push_back(out[static_cast<size_t>(((n * 3 + c) * H + (cell / 7) * side + dy) * W +
                                                        (cell % 7) * side + dx)]);
          patches[{n / per_group, plan.channelwise ? 1 : 0, c}].insert(content);
          ++masked_cells;
        }
    }
    ASSERT_GT(masked_cells, 50);
    std::set<std::vector<float>> all;
    for (const auto& [key, contents] : patches) {
      if (quirks) {
        EXPECT_EQ(contents.size(), 1u) << "group " << std::get<0>(key) << ": every cell one patch";
      }
      all.insert(contents.begin(), contents.end());
    }
    if (quirks) {
      EXPECT_EQ(all.size(), patches.size()) << "each group and variant draws its own patch";
    } else {
      EXPECT_EQ(static_cast<int64_t>(all.size()), masked_cells) << "fresh noise in every cell";
    }
  }
}

TEST(SaliencyMask, SameSeedAndStreamGiveTheSameMasksAndAnotherStreamOthers) {
  const MaskSetup s{MaskFill::Noise, MaskMode::Negative, false};
  const Tensor x = views(8, 28, 28, 1);
  const Tensor fg = random_foreground(8, 7, 1);
  const SaliencyMaskResult a = saliency_mask(x, fg, Tensor(), options_of(s, 3, 10, 0));
  const SaliencyMaskResult b = saliency_mask(x, fg, Tensor(), options_of(s, 3, 10, 0));
  const SaliencyMaskResult c = saliency_mask(x, fg, Tensor(), options_of(s, 3, 10 + kSaliencyMaskStreams, 0));
  EXPECT_EQ(a.masked.to_vector<float>(), b.masked.to_vector<float>());
  EXPECT_EQ(a.cells.to_vector<uint8_t>(), b.cells.to_vector<uint8_t>());
  EXPECT_NE(a.masked.to_vector<float>(), c.masked.to_vector<float>());
}

// ---- the stream moved by an offset in memory ----

// A one-element i64 offset on `device`, built from the exact integer (a double would round the
// large ones).
Tensor offset_tensor(int64_t value, Device device) { return Tensor::from_vector<int64_t>({value}, {1}).to(device); }

// The offsets and scales the calls below move the stream by: the masking's 16 streams a step, the
// first step, a large step whose scaled offset wraps past 2^64, and a negative offset.
struct StreamMove {
  int64_t offset;
  uint64_t scale;
};
const std::vector<StreamMove> kMoves = {{3, 16}, {0, 16}, {1'000'003, 16}, {INT64_MAX - 5, 16}, {-2, 1}};

// Every strategy and mode (and hp with the shared-noise streams of O6): the call with the offset
// on `device` masks, to the bit, as the call with the explicit stream stream + scale * offset; and
// a nonzero move masks otherwise than the unmoved stream, so an offset the op ignored would fail.
void check_offset_is_the_explicit_stream(Device device) {
  const int64_t N = 8, H = 28, W = 28, grid = 7;
  const uint64_t stream = 40;
  const Tensor x = views(N, H, W, 6).to(device);
  const Tensor fg = random_foreground(N, grid, 6).to(device);
  const Tensor blurred = gaussian_blur(x, 5, 2.0);
  std::vector<MaskSetup> setups;
  for (MaskFill fill : {MaskFill::Noise, MaskFill::Blur, MaskFill::Mean})
    for (MaskMode mode : {MaskMode::Positive, MaskMode::Negative}) setups.push_back({fill, mode, false});
  setups.push_back({MaskFill::Noise, MaskMode::Negative, true});
  for (const MaskSetup& s : setups)
    for (const StreamMove& move : kMoves) {
      const Tensor fill_views = s.fill == MaskFill::Blur ? blurred : Tensor();
      SaliencyMaskOptions moved = options_of(s, 12, stream, 4);
      moved.stream_offset = offset_tensor(move.offset, device);
      moved.stream_offset_scale = move.scale;
      const uint64_t effective = stream + move.scale * static_cast<uint64_t>(move.offset);
      const SaliencyMaskResult a = saliency_mask(x, fg, fill_views, moved);
      const SaliencyMaskResult b = saliency_mask(x, fg, fill_views, options_of(s, 12, effective, 4));
      const std::string where = fmt::format("{} on {}, offset {} scale {}", describe(s), device.str(), move.offset,
                                            move.scale);
      EXPECT_EQ(a.masked.to(Device::cpu()).to_vector<float>(), b.masked.to(Device::cpu()).to_vector<float>()) << where;
      EXPECT_EQ(a.cells.to(Device::cpu()).to_vector<uint8_t>(), b.cells.to(Device::cpu()).to_vector<uint8_t>())
          << where;
      EXPECT_EQ(a.focal.to(Device::cpu()).to_vector<uint8_t>(), b.focal.to(Device::cpu()).to_vector<uint8_t>())
          << where;
      if (effective != stream) {
        const SaliencyMaskResult unmoved = saliency_mask(x, fg, fill_views, options_of(s, 12, stream, 4));
        EXPECT_NE(a.cells.to(Device::cpu()).to_vector<uint8_t>(), unmoved.cells.to(Device::cpu()).to_vector<uint8_t>())
            << where << ": the offset moved nothing";
      }
    }
}

TEST(SaliencyMask, AStreamOffsetMasksAsTheExplicitStream) { check_offset_is_the_explicit_stream(Device::cpu()); }

TEST(SaliencyMask, CudaAStreamOffsetMasksAsTheExplicitStream) {
  SKIP_WITHOUT_CUDA();
  check_offset_is_the_explicit_stream(Device::cuda(0));
}

TEST(SaliencyMask, TheParamsOfACpuOffsetReplayTheMovedPlan) {
  // saliency_mask_params passes the offset's pointer, and the plan functions read it: a host replay
  // of the plan with a CPU offset is the plan of the moved stream, which check_batch holds the op's
  // output to.
  const int64_t N = 16, H = 28, W = 28, grid = 7;
  const MaskSetup s{MaskFill::Noise, MaskMode::Positive, true};
  const Tensor x = views(N, H, W, 3);
  const Tensor fg = random_foreground(N, grid, 3);
  SaliencyMaskOptions o = options_of(s, 4, 100, 4);
  o.stream_offset = offset_tensor(7, Device::cpu());
  o.stream_offset_scale = 16;
  const SaliencyMaskResult r = saliency_mask(x, fg, Tensor(), o);
  const SaliencyMaskParams moved = saliency_mask_params(N, H, W, grid, o);
  check_batch(s, x, fg, Tensor(), r, moved);
  const SaliencyMaskParams explicit_stream = params_of(s, N, H, W, grid, 4, 100 + 16 * 7, 4);
  EXPECT_EQ(mask_first_stream(moved), 100u + 16u * 7u);
  const std::vector<uint8_t> f = fg.to_vector<uint8_t>();
  for (int64_t n = 0; n < N; ++n) {
    const MaskImagePlan a = mask_image_plan(moved, n, f.data() + n * 49);
    const MaskImagePlan b = mask_image_plan(explicit_stream, n, f.data() + n * 49);
    EXPECT_EQ(a.ratio, b.ratio) << "image " << n;
    EXPECT_EQ(a.focal, b.focal) << "image " << n;
    EXPECT_EQ(a.channelwise, b.channelwise) << "image " << n;
    EXPECT_EQ(cell_key(moved, a, n, 2, 30), cell_key(explicit_stream, b, n, 2, 30)) << "image " << n;
  }
  // Changing the value in place moves the next call, with the same options.
  o.stream_offset.fill_(8.0);
  const SaliencyMaskResult next = saliency_mask(x, fg, Tensor(), o);
  const SaliencyMaskResult expected = saliency_mask(x, fg, Tensor(), options_of(s, 4, 100 + 16 * 8, 4));
  EXPECT_EQ(next.masked.to_vector<float>(), expected.masked.to_vector<float>());
  EXPECT_NE(next.masked.to_vector<float>(), r.masked.to_vector<float>());
}

TEST(SaliencyMask, CudaReadsTheStreamOffsetOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  // One offset tensor, changed on the device between two calls with the same options (a captured
  // step replays the same launch): different masks, each the explicit stream's, and no host read.
  const Device gpu = Device::cuda(0);
  const int64_t N = 8, H = 28, W = 28, grid = 7;
  const MaskSetup s{MaskFill::Noise, MaskMode::Positive, false};
  const Tensor x = views(N, H, W, 5).to(gpu);
  const Tensor fg = random_foreground(N, grid, 5).to(gpu);
  SaliencyMaskOptions o = options_of(s, 9, 1000, 0);
  o.stream_offset = Tensor::zeros({1}, DType::i64, gpu);
  o.stream_offset_scale = 16;
  const uint64_t reads = host_read_count();
  const SaliencyMaskResult first = saliency_mask(x, fg, Tensor(), o);
  o.stream_offset.fill_(3.0);
  const SaliencyMaskResult second = saliency_mask(x, fg, Tensor(), o);
  EXPECT_EQ(host_read_count(), reads) << "the offset must be read by the kernel, never by the host";
  const SaliencyMaskResult at_0 = saliency_mask(x, fg, Tensor(), options_of(s, 9, 1000, 0));
  const SaliencyMaskResult at_3 = saliency_mask(x, fg, Tensor(), options_of(s, 9, 1000 + 16 * 3, 0));
  EXPECT_EQ(first.masked.to(Device::cpu()).to_vector<float>(), at_0.masked.to(Device::cpu()).to_vector<float>());
  EXPECT_EQ(second.masked.to(Device::cpu()).to_vector<float>(), at_3.masked.to(Device::cpu()).to_vector<float>());
  EXPECT_EQ(second.cells.to(Device::cpu()).to_vector<uint8_t>(), at_3.cells.to(Device::cpu()).to_vector<uint8_t>());
  EXPECT_EQ(second.focal.to(Device::cpu()).to_vector<uint8_t>(), at_3.focal.to(Device::cpu()).to_vector<uint8_t>());
  EXPECT_NE(first.masked.to(Device::cpu()).to_vector<float>(), second.masked.to(Device::cpu()).to_vector<float>());
  // And the CPU, with the same offset on the host, draws the same masks.
  SaliencyMaskOptions on_cpu = o;
  on_cpu.stream_offset = offset_tensor(3, Device::cpu());
  const SaliencyMaskResult cpu = saliency_mask(x.to(Device::cpu()), fg.to(Device::cpu()), Tensor(), on_cpu);
  EXPECT_EQ(cpu.masked.to_vector<float>(), second.masked.to(Device::cpu()).to_vector<float>());
  EXPECT_EQ(cpu.cells.to_vector<uint8_t>(), second.cells.to(Device::cpu()).to_vector<uint8_t>());
}

TEST(SaliencyMask, AStreamOffsetItCannotReadIsRefused) {
  const Tensor x = views(2, 28, 28, 1);
  const Tensor fg = random_foreground(2, 7, 1);
  const auto refusal = [&](const Tensor& offset, const Tensor& views_in, const Tensor& fg_in) {
    SaliencyMaskOptions o;
    o.stream_offset = offset;
    return error_of([&] { saliency_mask(views_in, fg_in, Tensor(), o); });
  };
  for (const Tensor& bad : {Tensor::zeros({1}, DType::i32), Tensor::zeros({1}, DType::f32),
                            Tensor::zeros({2}, DType::i64), Tensor::zeros({0}, DType::i64)}) {
    const std::string msg = refusal(bad, x, fg);
    EXPECT_NE(msg.find("expected the stream offset to be a one-element i64 tensor"), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad.str()), std::string::npos) << "the message names what it found: " << msg;
    SaliencyMaskOptions o;
    o.stream_offset = bad;
    EXPECT_THROW(saliency_mask_params(2, 28, 28, 7, o), Error);
  }
  if (cuda_device_count() > 0) {
    const Device gpu = Device::cuda(0);
    std::string msg = refusal(Tensor::zeros({1}, DType::i64), x.to(gpu), fg.to(gpu));
    EXPECT_NE(msg.find("on the views' device cuda"), std::string::npos) << msg;
    msg = refusal(Tensor::zeros({1}, DType::i64, gpu), x, fg);
    EXPECT_NE(msg.find("on the views' device cpu"), std::string::npos) << msg;
  }
}

TEST(SaliencyMask, BadInputIsRefusedWithAMessage) {
  const Tensor x = views(2, 28, 28, 1);
  const Tensor fg = random_foreground(2, 7, 1);
  const SaliencyMaskOptions hp;
  SaliencyMaskOptions blur;
  blur.fill = MaskFill::Blur;
  EXPECT_THROW(saliency_mask(x, random_foreground(3, 7, 1), Tensor(), hp), Error);  // N differs
  EXPECT_THROW(saliency_mask(x, fg.to(DType::f32), Tensor(), hp), Error);          // not u8
  EXPECT_THROW(saliency_mask(x, fg, Tensor(), blur), Error);                        // no blurred views
  EXPECT_THROW(saliency_mask(views(2, 28, 28, 1).slice(1, 0, 2), fg, Tensor(), hp), Error);  // 2 channels
  EXPECT_THROW(saliency_mask(views(1, 40, 40, 1), random_foreground(1, 17, 1), Tensor(), hp), Error);  // grid 17
}

TEST(SaliencyMask, CudaDrawsTheSameMasksAsTheCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const int64_t N = 20, H = 56, W = 56, grid = 7;
  for (const MaskSetup& s : all_setups()) {
    const Tensor x = views(N, H, W, 4);
    const Tensor fg = random_foreground(N, grid, 4);
    const Tensor blurred = s.fill == MaskFill::Blur ? gaussian_blur(x, 5, 2.0) : Tensor();
    const SaliencyMaskOptions o = options_of(s, 21, 8, 5);
    const SaliencyMaskResult cpu = saliency_mask(x, fg, blurred, o);
    const SaliencyMaskResult gpu = saliency_mask(x.to(Device::cuda(0)), fg.to(Device::cuda(0)),
                                                 blurred.defined() ? blurred.to(Device::cuda(0)) : Tensor(), o);
    EXPECT_EQ(gpu.cells.to(Device::cpu()).to_vector<uint8_t>(), cpu.cells.to_vector<uint8_t>()) << describe(s);
    EXPECT_EQ(gpu.focal.to(Device::cpu()).to_vector<uint8_t>(), cpu.focal.to_vector<uint8_t>()) << describe(s);
    const double tol = s.fill == MaskFill::Mean ? 1e-6 : 0.0;  // mean: each backend's own channel mean
    EXPECT_TRUE(all_close(gpu.masked.to(Device::cpu()), cpu.masked, tol, tol)) << describe(s);
  }
}

}  // namespace
}  // namespace engine::testing
