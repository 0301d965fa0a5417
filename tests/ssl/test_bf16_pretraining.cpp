// test_bf16_pretraining.cpp - MoCo v2 pretraining in bf16 on the CPU (the CPU's bf16 mode rounds
// where the CUDA path does, engine/precision.h): over a few hundred steps on synthetic data its
// loss tracks the f32 run's, and its checkpoints hold f32 weights.
//
// The tolerances. Both runs see the same batches, augmentations and shuffle-BN permutations (the
// data pipeline is f32 and seeded), so they differ only by rounding: bf16 activations and weights
// carry 8 significant bits. Over the first kEarly steps the trajectories have not yet moved apart,
// and each step's loss must be within kEarlyTolerance (1%) of f32's (measured: at most 0.45%).
// After that, rounding differences grow along the trajectory until single steps differ by as much
// as one batch from the next (measured: up to 4%), so the losses are averaged over windows of
// kWindow steps: each window's mean must be within kWindowTolerance (1.5%) of f32's. Measured: at
// most 0.42%; a window mean still carries about 3% / sqrt(40) = 0.5% of batch noise, hence 3x that.
// The run is deterministic (fixed seeds, deterministic ops), so these are not flaky margins but
// room for another CPU's BLAS rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "engine/log.h"
#include "engine/metrics_log.h"
#include "engine/serialize.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/ssl/plain_synth.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;

#if ENGINE_SANITIZE
// Under the sanitizers every step is over ten times slower: 20 steps show any memory error the
// bf16 path makes, and the tracking over 200 steps is the ordinary build's check.
constexpr int64_t kSteps = 20, kWindow = 10, kEarly = 10;
#else
constexpr int64_t kSteps = 200, kWindow = 40, kEarly = 10;
#endif
constexpr double kEarlyTolerance = 0.01, kWindowTolerance = 0.015;

// The quickstart's recipe (scripts/quickstart.sh) at a smaller scale: ResNet-18 at width 8 with
// the small stem, 32 pixels, batches of 32 in 4 BatchNorm groups, the MLP head, T 0.2, m 0.99 and
// aug-plus with its blur scaled to 32 pixels; 128 images, so 4 steps an epoch.
PretrainConfig config(const fs::path& root, const std::string& run, Precision precision) {
  PretrainConfig c;
  c.data = (root / "synth").string();
  c.save_dir = (root / run).string();
  c.moco.arch = "resnet18";
  c.moco.small_stem = true;
  c.moco.width = 8;
  c.moco.dim = 32;
  c.moco.queue_size = 128;
  c.moco.momentum = 0.99;
  c.moco.temperature = 0.2;
  c.moco.mlp = true;
  c.moco.bn_groups = 4;
  c.batch_size = 32;
  c.image_size = 32;
  c.epochs = kSteps / 4;
  c.lr = 0.06;
  c.cos = true;
  c.aug_plus = true;
  c.blur_sigma = {0.02, 0.3};
  c.workers = 2;
  c.print_freq = 1;
  c.seed = 7;
  c.precision = precision;
  c.args_json = "{}";
  return c;
}

// The metric `key` ("loss", "acc1") of every step, in order.
std::vector<double> step_values(const PretrainConfig& c, const char* key) {
  std::vector<double> values;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string()))
    if (line.at("kind").get<std::string>() == "step") values.push_back(line.at(key).get<double>());
  return values;
}

std::vector<double> window_means(const std::vector<double>& losses) {
  std::vector<double> means;
  for (size_t start = 0; start + kWindow <= losses.size(); start += kWindow) {
    double total = 0;
    for (size_t i = start; i < start + kWindow; ++i) total += losses[i];
    means.push_back(total / kWindow);
  }
  return means;
}

TEST(Bf16Pretraining, CpuBf16LossTracksTheF32RunAndCheckpointsHoldF32Weights) {
  testing::TempDir dir("bf16_pretraining");
  testing::write_plain_synth(dir.path(), 32);

  const PretrainConfig f32 = config(dir.path(), "f32", Precision::fp32);
  const PretrainConfig bf16 = config(dir.path(), "bf16", Precision::bf16);
  pretrain(f32);
  pretrain(bf16);
  const std::vector<double> f32_steps = step_values(f32, "loss"), bf16_steps = step_values(bf16, "loss");
  ASSERT_EQ(f32_steps.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(bf16_steps.size(), f32_steps.size());
  for (size_t i = 0; i < kEarly; ++i)
    EXPECT_LT(std::abs(bf16_steps[i] - f32_steps[i]), kEarlyTolerance * f32_steps[i])
        << "step " << i << ": bf16 loss " << bf16_steps[i] << ", f32 " << f32_steps[i];
  const std::vector<double> expected = window_means(f32_steps), actual = window_means(bf16_steps);
  ASSERT_EQ(expected.size(), static_cast<size_t>(kSteps / kWindow));
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t w = 0; w < expected.size(); ++w) {
    EXPECT_LT(std::abs(actual[w] - expected[w]), kWindowTolerance * expected[w])
        << "steps " << w * kWindow << " to " << (w + 1) * kWindow << ": bf16 mean loss " << actual[w] << ", f32 "
        << expected[w];
  }
  EXPECT_NE(f32_steps.front(), bf16_steps.front()) << "the bf16 run computed in f32";

  const SafetensorsFile last = load_safetensors((fs::path(bf16.save_dir) / "checkpoints" / "last.safetensors").string());
  int64_t floating = 0;
  for (const auto& [name, t] : last.tensors) {
    if (!dtype_is_floating(t.dtype())) continue;
    EXPECT_EQ(t.dtype(), DType::f32) << name;
    ++floating;
  }
  EXPECT_GT(floating, 100);
}

// A run continued with another --precision carries its f32 weights over and says that it no longer
// follows the interrupted run bit for bit.
TEST(Bf16Pretraining, ResumingInAnotherPrecisionContinuesAndSaysSo) {
  testing::TempDir dir("bf16_resume");
  testing::write_plain_synth(dir.path(), 8);
  PretrainConfig bf16 = config(dir.path(), "run", Precision::bf16);
  bf16.args_json = R"({"precision": "bf16"})";  // as the command line records it
  bf16.batch_size = 16;
  bf16.max_steps = 1;
  pretrain(bf16);
  PretrainConfig fp32 = bf16;
  fp32.precision = Precision::fp32;
  fp32.args_json = R"({"precision": "fp32"})";
  fp32.max_steps = 2;
  fp32.resume = "auto";
  std::vector<std::string> warnings;
  const LogSink previous = set_log_sink([&](LogLevel level, std::string_view message) {
    if (level == LogLevel::Warning) warnings.emplace_back(message);
  });
  const PretrainResult r = pretrain(fp32);
  set_log_sink(previous);
  EXPECT_EQ(r.position.step, 2);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("trained with --precision bf16 and this run continues it in fp32"), std::string::npos)
      << warnings[0];
}

// The CUDA path in bf16 (channels-last) against the CPU's bf16 mode over the first steps, and no
// host reads in its steady-state steps (the step stays free of them in bf16). Both round at the
// same points but sum in other orders, so a step's loss may differ by what the first steps of the
// CPU test allow against f32.
TEST(Bf16Pretraining, CudaBf16StepsFollowTheCpuBf16RunAndReadNothing) {
  SKIP_WITHOUT_CUDA();
  testing::TempDir dir("bf16_pretraining_cuda");
  testing::write_plain_synth(dir.path(), 8);
  PretrainConfig cpu = config(dir.path(), "cpu", Precision::bf16);
  cpu.epochs = 2;  // 32 images in batches of 16: 4 steps
  cpu.batch_size = 16;
  PretrainConfig gpu = cpu;
  gpu.save_dir = (dir.path() / "gpu").string();
  gpu.device = Device::cuda();
  pretrain(cpu);
  pretrain(gpu);
  const std::vector<double> expected = step_values(cpu, "loss"), actual = step_values(gpu, "loss");
  ASSERT_EQ(actual.size(), 4u);
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < actual.size(); ++i)
    EXPECT_LT(std::abs(actual[i] - expected[i]), kEarlyTolerance * expected[i]) << "step " << i;
  const std::vector<double> reads = step_values(gpu, "host_reads");
  EXPECT_EQ(reads[1], 0) << "the second step of epoch 0 read tensor values back to the host";
  EXPECT_EQ(reads[3], 0) << "the second step of epoch 1 read tensor values back to the host";
}

}  // namespace
}  // namespace engine::ssl
