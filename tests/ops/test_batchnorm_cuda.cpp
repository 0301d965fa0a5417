// test_batchnorm_cuda.cpp - batchnorm2d's CUDA kernels at the shapes that choose their paths: the
// per-(group, channel) sums split over several blocks (channel_reduce_plan.h) and combined, the
// NCHW row kernel and the NHWC channel-tile kernel, HW = 49 and HW = 1, ghost groups in one
// launch; each against the CPU reference (itself checked by finite differences in the conformance
// suite). The real-size cases (ResNet-50's layer1 and last stage at batch 256 in 4 ghost groups)
// run on a GPU only; each has a small twin here that takes the same path in the emulator.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "ops/batchnorm2d.h"
#include "ops/channel_reduce_plan.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

constexpr int64_t kH100Multiprocessors = 132;  // also the emulated device's count

// One training step's results: the forward, the gradients of a fixed dy, the running statistics.
struct TrainStep {
  Tensor y, dx, dgamma, dbeta, running_mean, running_var;
};

struct Case {
  Shape shape;
  bool channels_last = false;
  int64_t groups = 1;
  GhostRunningStats rule = GhostRunningStats::FirstGroup;
};

// The same values on both devices: on CUDA in `dtype`, on the CPU the f32 of those (rounded)
// values; x in the case's layout. x is not centred (mean 1), so the variance pass's subtraction of
// the mean matters.
TrainStep train_step(const Case& c, DType dtype, Device device) {
  const int64_t C = c.shape[1];
  const auto make = [&](const InputSpec& spec, uint64_t seed, DType type) {
    const Tensor t = make_input(spec, seed, type, device);
    return device.is_cpu() ? t.to(DType::f32) : t;
  };
  const Layout layout = c.channels_last ? Layout::ChannelsLast : Layout::Contiguous;
  Tensor x = make({c.shape, -0.5, 2.5, layout}, 31, dtype);
  Tensor gamma = make({{C}, 0.5, 1.5}, 32, DType::f32), beta = make({{C}, -0.5, 0.5}, 33, DType::f32);
  const Tensor dy = make({c.shape}, 34, dtype);
  TrainStep s;
  s.running_mean = make({{C}, -0.2, 0.2}, 35, DType::f32);
  s.running_var = make({{C}, 0.5, 2.0}, 36, DType::f32);
  x.requires_grad_(true);
  gamma.requires_grad_(true);
  beta.requires_grad_(true);
  BatchNormOptions opt;
  opt.groups = c.groups;
  opt.running_stats = c.rule;
  s.y = batchnorm2d(x, gamma, beta, s.running_mean, s.running_var, opt);
  s.y.backward(dy);
  s.dx = x.grad();
  s.dgamma = gamma.grad();
  s.dbeta = beta.grad();
  return s;
}

// Per element |cuda - cpu| <= atol + rtol |cpu|. values: y and dx; sums: dgamma and dbeta, sums
// over a whole channel whose float rounding grows with the count; stats: the running statistics.
struct Tolerances {
  double values_atol = 1e-5, values_rtol = 1e-5;
  double sums_atol = 1e-4, sums_rtol = 1e-5;
  double stats_tol = 1e-6;
};

void expect_cuda_matches_cpu(const Case& c, DType dtype, const Tolerances& tol) {
  const TrainStep cpu = train_step(c, dtype, Device::cpu()), gpu = train_step(c, dtype, Device::cuda());
  // (With H W = 1 both layouts are the same memory, and the tensor reads as NCHW.)
  const bool nhwc = c.channels_last && c.shape[2] * c.shape[3] > 1;
  EXPECT_EQ(gpu.y.memory_format(), nhwc ? MemoryFormat::NHWC : MemoryFormat::NCHW);
  EXPECT_TRUE(all_close(gpu.y.to(DType::f32), cpu.y, tol.values_atol, tol.values_rtol)) << "y";
  EXPECT_TRUE(all_close(gpu.dx.to(DType::f32), cpu.dx, tol.values_atol, tol.values_rtol)) << "dx";
  EXPECT_TRUE(all_close(gpu.dgamma, cpu.dgamma, tol.sums_atol, tol.sums_rtol)) << "dgamma";
  EXPECT_TRUE(all_close(gpu.dbeta, cpu.dbeta, tol.sums_atol, tol.sums_rtol)) << "dbeta";
  EXPECT_TRUE(all_close(gpu.running_mean, cpu.running_mean, tol.stats_tol, tol.stats_tol)) << "running_mean";
  EXPECT_TRUE(all_close(gpu.running_var, cpu.running_var, tol.stats_tol, tol.stats_tol)) << "running_var";
}

ChannelLayout layout_of(const Case& c) {
  return {c.shape[0], c.shape[1], c.shape[2] * c.shape[3], c.channels_last};
}

// The shapes: real sizes and their small twins. A twin takes its real case's kernel and, where
// the real case splits its sums, splits too, at boundaries that are multiples of neither the
// image, the block (256) nor the NHWC block's 8 pixel lanes.
const Case kLayer1{{256, 64, 56, 56}, false, 4};
const Case kLayer1Twin{{8, 3, 61, 59}, false, 4};
const Case kLayer1Nhwc{{256, 64, 56, 56}, true, 4};
const Case kLayer1NhwcTwin{{8, 40, 23, 29}, true, 4};
const Case kLastStage{{256, 2048, 7, 7}, false, 4};
const Case kLastStageTwin{{12, 40, 7, 7}, false, 4};
const Case kLastStageNhwc{{256, 2048, 7, 7}, true, 4};
const Case kLastStageNhwcTwin{{12, 40, 7, 7}, true, 4};

TEST(BatchNormPlan, RealSizesFillAnH100AndTwinsTakeTheSamePath) {
  struct Expected {
    const Case& c;
    bool tiled;
    int64_t row_blocks, splits;
  };
  const Expected expected[] = {
      // 256 rows of 64 x 3136 values: 5 splits make 1280 blocks for 132 x 8.
      {kLayer1, false, 256, 5},
      {kLayer1Twin, false, 12, 3},  // 2 x 3599 values in 3 splits: boundaries 2399 and 4798
      // 4 groups x 2 tiles of 32 channels, 200704 pixels: 132 splits of ~1520 pixels.
      {kLayer1Nhwc, true, 8, 132},
      {kLayer1NhwcTwin, true, 8, 20},  // the second tile half empty (40 channels); 1334 / 20 pixels
      {kLastStage, false, 8192, 1},    // rows enough already: one block per (group, channel)
      {kLastStageTwin, false, 160, 1},
      {kLastStageNhwc, true, 256, 5},
      {kLastStageNhwcTwin, true, 8, 2},  // 147 pixels in 2 splits
  };
  for (const Expected& e : expected) {
    const ChannelReducePlan p = plan_channel_reduce(layout_of(e.c), e.c.groups, kH100Multiprocessors);
    const std::string shape = shape_str(e.c.shape) + (e.c.channels_last ? " NHWC" : " NCHW");
    EXPECT_EQ(p.tiled, e.tiled) << shape;
    EXPECT_EQ(p.row_blocks, e.row_blocks) << shape;
    EXPECT_EQ(p.splits, e.splits) << shape;
    EXPECT_EQ(p.rows, e.c.groups * e.c.shape[1]) << shape;
  }
}

TEST(BatchNormPlan, OneValuePerImageIsSummedAsChannelsLastAndSmallSumsDoNotSplit) {
  const ChannelReducePlan hw1 = plan_channel_reduce({16, 2048, 1, false}, 4, kH100Multiprocessors);
  EXPECT_TRUE(hw1.tiled);  // NCHW with HW = 1 is NHWC in memory
  EXPECT_EQ(hw1.row_blocks, 4 * 64);
  EXPECT_EQ(hw1.splits, 1);
  const ChannelReducePlan tiny = plan_channel_reduce({2, 3, 20, false}, 1, kH100Multiprocessors);
  EXPECT_EQ(tiny.splits, 1);  // 40 values per channel: one block each
  EXPECT_EQ(tiny.row_blocks, 3);
}

// ---- small cases and twins: run in the emulator ----

TEST(BatchNormCuda, Layer1TwinSplitsRowsAndMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu(kLayer1Twin, DType::f32, {});
}

TEST(BatchNormCuda, Layer1NhwcTwinSplitsTilesAndMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu(kLayer1NhwcTwin, DType::f32, {});
}

TEST(BatchNormCuda, LastStageTwinMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu(kLastStageTwin, DType::f32, {});
}

TEST(BatchNormCuda, LastStageNhwcTwinMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu(kLastStageNhwcTwin, DType::f32, {});
}

TEST(BatchNormCuda, OneValuePerImageInBothLayoutsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu({{16, 40, 1, 1}, false, 4}, DType::f32, {});
  expect_cuda_matches_cpu({{16, 40, 1, 1}, true, 4}, DType::f32, {});
}

TEST(BatchNormCuda, AverageRuleOverSplitGroupsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu({{8, 3, 61, 59}, false, 4, GhostRunningStats::Average}, DType::f32, {});
  expect_cuda_matches_cpu({{12, 40, 7, 7}, true, 3, GhostRunningStats::Average}, DType::f32, {});
}

// bf16 activations: the GPU rounds y and dx to bf16 (2e-2, as the conformance cases); dgamma and
// dbeta are sums over the same bf16 values of x and dy on both sides, apart only by f32 terms
// against double ones.
TEST(BatchNormCuda, Bf16SplitPathsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  Tolerances bf16;
  bf16.values_atol = bf16.values_rtol = 2e-2;
  bf16.sums_atol = 1e-3;
  bf16.sums_rtol = 1e-4;
  expect_cuda_matches_cpu(kLayer1Twin, DType::bf16, bf16);
  expect_cuda_matches_cpu(kLastStageNhwcTwin, DType::bf16, bf16);
}

// The partial sums are combined in a fixed order, never by atomics: two runs agree to the bit.
TEST(BatchNormCuda, SplitSumsRepeatToTheBit) {
  SKIP_WITHOUT_CUDA();
  for (const Case& c : {kLayer1Twin, kLayer1NhwcTwin}) {
    const TrainStep a = train_step(c, DType::f32, Device::cuda()), b = train_step(c, DType::f32, Device::cuda());
    EXPECT_TRUE(all_close(a.y, b.y, 0, 0));
    EXPECT_TRUE(all_close(a.dx, b.dx, 0, 0));
    EXPECT_TRUE(all_close(a.dgamma, b.dgamma, 0, 0));
    EXPECT_TRUE(all_close(a.dbeta, b.dbeta, 0, 0));
  }
}

// ---- real sizes: GPU only ----
// Sums over 4 x 64 x 3136 = 802816 values per channel (layer1) come to a few hundred; both sides
// add in double, but the CUDA terms are f32 (xhat from f32 mean and invstd): 1e-3 absolute.
Tolerances real_size_tolerances() {
  Tolerances t;
  t.sums_atol = 1e-3;
  return t;
}

TEST(BatchNormCudaRealSize, Layer1Nchw4GhostGroupsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  expect_cuda_matches_cpu(kLayer1, DType::f32, real_size_tolerances());
}

TEST(BatchNormCudaRealSize, Layer1Nhwc4GhostGroupsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  expect_cuda_matches_cpu(kLayer1Nhwc, DType::f32, real_size_tolerances());
}

TEST(BatchNormCudaRealSize, LastStageNchw4GhostGroupsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  expect_cuda_matches_cpu(kLastStage, DType::f32, real_size_tolerances());
}

TEST(BatchNormCudaRealSize, LastStageNhwc4GhostGroupsMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  expect_cuda_matches_cpu(kLastStageNhwc, DType::f32, real_size_tolerances());
}

}  // namespace
}  // namespace engine::testing
