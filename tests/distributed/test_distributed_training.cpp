// test_distributed_training.cpp - the oracle of distributed training: W ranks of b images with
// --bn-groups 1 take the very steps of one process with the global batch of W b images in W
// BatchNorm groups. Checked for MoCo v2 and SimCLR, plain and with the paper's masking and a hard
// negative, step by step (the methods), and for whole runs of the trainer (the data sharding, the
// logged losses, the checkpoints, resuming a run of W ranks in one process, and refusing a resume
// with another group count), the supervised baseline's included.
//
// Tolerance. The W ranks compute the same numbers as the one process except for the order of
// sums: each rank's convolution and BatchNorm backward sums its b images, and the average over the
// ranks adds the W partial sums, where one process sums the W b images in one loop. On the CPU
// in f32 that moves a weight by a few ulps per step (|w| < 1 and lr 0.03: < 1e-6 after a few
// steps); 1e-5 absolute on weights, queue and losses is ten times that and far below any real
// difference (one image in the wrong group moves the loss by 1e-2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/metrics_log.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/data_parallel.h"
#include "layers/optimizer.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/simclr.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/distributed/distributed_env.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using engine::testing::TempDir;
using engine::testing::all_close;
using engine::testing::world;

constexpr double kTolerance = 1e-5;
constexpr int64_t kPerRank = 4;  // images per rank

// The global batch of step `step` (every rank makes the same), or this rank's slice of it.
Tensor global_view(int64_t step, int view, int64_t side) {
  Tensor all = Tensor::empty({world().world_size() * kPerRank, 3, side, side});
  Generator gen(21, static_cast<uint64_t>(100 + 2 * step + view));
  normal_(all, gen);
  return all;
}
Tensor my_slice(const Tensor& all) {
  const int64_t first = world().rank() * kPerRank;
  return all.slice(0, first, first + kPerRank).contiguous();
}

double mean_over_ranks(const Tensor& loss) {
  Tensor v = loss.detach().view({1}).clone();
  world().all_reduce(v, Reduction::Average);
  return v.item();
}

// One training step of `method` as the trainer takes it.
double step(ContrastiveMethod& method, nn::Optimizer& sgd, nn::DataParallelGradients* gradients, const Tensor& q,
            const Tensor& k, const SaliencyGuidedMasking* masking, int64_t s) {
  ContrastiveOutput out = method.train_forward({{q, k}, Tensor(), Tensor()}, masking, s, nullptr);  // q, k (N, 3, H, W)
  method.online_encoder().zero_grad();
  out.loss.backward();
  if (gradients) gradients->finish();
  sgd.step(0.03);
  return out.loss.item();
}

MaskingConfig masking_config(int64_t groups, int64_t rank) {
  MaskingConfig mc;
  mc.strategy = MaskStrategy::Hp;
  mc.saliency.kind = SaliencySourceKind::Own;
  mc.num_nonsem = 1;
  mc.bn_groups = groups;
  mc.seed = 4;
  mc.rank = rank;
  return mc;
}

// Trains the one-process method (W groups) and the distributed one (1 group per rank) side by side.
template <typename Method, typename Config>
void expect_ranks_take_the_one_process_steps(Config config, bool masked, const char* what,
                                             Device device = Device::cpu(), int64_t steps = 3) {
  const int W = world().world_size();
  const int64_t side = masked ? 32 : 16;
  config.bn_groups = W;
  Method single(config, 9, device, local_collectives());
  config.bn_groups = 1;
  Method ranks(config, 9, device, world());
  nn::Sgd single_sgd(single.online_encoder(), {0.9, 1e-4}), ranks_sgd(ranks.online_encoder(), {0.9, 1e-4});
  nn::DataParallelGradients gradients(ranks.online_encoder(), world(), /*bucket_bytes=*/64 * 1024);
  std::unique_ptr<SaliencyGuidedMasking> single_masking, ranks_masking;
  if (masked) {
    MaskingConfig mc = masking_config(W, 0);
    mc.saliency.kind = single.own_saliency_source();
    single_masking = std::make_unique<SaliencyGuidedMasking>(mc, device);
    mc.bn_groups = 1;
    mc.rank = world().rank();
    ranks_masking = std::make_unique<SaliencyGuidedMasking>(mc, device);
  }
  for (int64_t s = 0; s < steps; ++s) {
    const Tensor q = global_view(s, 0, side).to(device), k = global_view(s, 1, side).to(device);
    const double expected = step(single, single_sgd, nullptr, q, k, single_masking.get(), s);
    const TrainingBatch mine{{my_slice(q), my_slice(k)}, Tensor(), Tensor()};  // this rank's (N, 3, H, W) of each view
    ContrastiveOutput out = ranks.train_forward(mine, ranks_masking.get(), s, nullptr);
    ranks.online_encoder().zero_grad();
    out.loss.backward();
    gradients.finish();
    ranks_sgd.step(0.03);
    // MoCo's loss is the mean over this rank's rows (its mean over the ranks is the global mean);
    // SimCLR's is the global batch's on every rank.
    EXPECT_NEAR(mean_over_ranks(out.loss), expected, kTolerance) << what << ", step " << s;
  }
  const NamedTensors a = single.state_dict(), b = ranks.state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first.find("running_") != std::string::npos || a[i].first.find("num_batches") != std::string::npos) {
      if (world().is_root()) {  // the statistics follow group 0: rank 0's
        EXPECT_TRUE(all_close(b[i].second, a[i].second, kTolerance, 0)) << a[i].first;
      }
      continue;
    }
    EXPECT_TRUE(all_close(b[i].second, a[i].second, kTolerance, 0)) << what << ": " << a[i].first;
  }
}

MocoConfig small_moco() {
  MocoConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.width = 8;
  c.dim = 8;
  c.queue_size = 24 * kPerRank;
  c.temperature = 0.2;
  c.mlp = true;
  return c;
}

SimclrConfig small_simclr() {
  SimclrConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.width = 8;
  c.dim = 8;
  return c;
}

TEST(DistributedTraining, MocoRanksTakeTheOneProcessSteps) {
  expect_ranks_take_the_one_process_steps<MoCo>(small_moco(), /*masked=*/false, "moco");
}

TEST(DistributedTraining, MaskedMocoWithAHardNegativeRanksTakeTheOneProcessSteps) {
  expect_ranks_take_the_one_process_steps<MoCo>(small_moco(), /*masked=*/true, "moco hp");
}

// On CUDA tensors (the emulation build's, or a GPU's): the gathers, the permutations made on the
// device and the gradient buckets go through MPI's host copies, or NCCL.
TEST(DistributedTraining, CudaMocoAndSimclrRanksTakeTheOneProcessSteps) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device (the emulation build has one)";
  expect_ranks_take_the_one_process_steps<MoCo>(small_moco(), /*masked=*/false, "cuda moco", Device::cuda(0), 2);
  expect_ranks_take_the_one_process_steps<SimCLR>(small_simclr(), /*masked=*/false, "cuda simclr", Device::cuda(0), 2);
}

TEST(DistributedTraining, SimclrRanksTakeTheOneProcessSteps) {
  expect_ranks_take_the_one_process_steps<SimCLR>(small_simclr(), /*masked=*/false, "simclr");
}

TEST(DistributedTraining, MaskedSimclrWithAHardNegativeRanksTakeTheOneProcessSteps) {
  expect_ranks_take_the_one_process_steps<SimCLR>(small_simclr(), /*masked=*/true, "simclr hp");
}

// Whole runs of the trainer: W ranks with -b 4W --bn-groups 1 against one process with -b 4W
// --bn-groups W, masked with a hard negative.
class DistributedTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("distributed");
    root_ = broadcast_text(world(), dir_->path().string());
    testing::write_synth_on_rank_zero((fs::path(root_) / "synth").string(), 2, 8, 1);
  }
  static void TearDownTestSuite() {
    world().barrier();
    delete dir_;  // rank 0's folder is the one every rank used
    dir_ = nullptr;
  }

  static PretrainConfig config(const std::string& run, bool distributed, int64_t max_steps) {
    const int W = world().world_size();
    PretrainConfig c;
    c.data = (fs::path(root_) / "synth").string();
    c.save_dir = (fs::path(root_) / run).string();
    c.moco = small_moco();
    c.moco.queue_size = 8 * kPerRank * W;
    c.moco.alpha = 2;
    c.moco.bn_groups = distributed ? 1 : W;
    c.batch_size = kPerRank * W;
    c.image_size = 32;
    c.epochs = 2;
    c.cos = true;
    c.aug_plus = true;
    c.workers = 1;
    c.print_freq = 1;
    c.seed = 5;
    c.max_steps = max_steps;
    c.strategy = MaskStrategy::Hp;
    c.num_nonsem = 1;
    c.args_json = "{}";
    c.world = distributed ? &world() : nullptr;
    return c;
  }

  static std::vector<double> logged_losses(const std::string& run) {
    std::vector<double> out;
    for (const auto& entry : MetricsLog::read((fs::path(root_) / run / "metrics.jsonl").string()))
      if (entry.at("kind") == "step") out.push_back(entry.at("loss").get<double>());
    return out;
  }

  static NamedTensors last_state(const std::string& run) {
    return load_safetensors((fs::path(root_) / run / "checkpoints" / "last.safetensors").string()).tensors;
  }

  static void expect_same_state(const NamedTensors& a, const NamedTensors& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].first, b[i].first) << what;
      EXPECT_TRUE(all_close(b[i].second, a[i].second, kTolerance, 0)) << what << ": " << a[i].first;
    }
  }

  static TempDir* dir_;
  static std::string root_;
};

TempDir* DistributedTrainerTest::dir_ = nullptr;
std::string DistributedTrainerTest::root_;

TEST_F(DistributedTrainerTest, RanksTrainTheOneProcessRunAndEitherResumesTheOther) {
  const int W = world().world_size();
  // 16 images, global batches of 4 W: 4 / W steps per epoch, 2 epochs.
  const int64_t steps = 2 * 16 / (kPerRank * W);
  PretrainResult ranks = pretrain(config("ranks", /*distributed=*/true, 0));
  if (world().is_root()) {
    const PretrainResult single = pretrain(config("single", /*distributed=*/false, 0));
    EXPECT_EQ(ranks.position.step, steps);
    EXPECT_EQ(single.position.step, steps);
    const std::vector<double> a = logged_losses("single"), b = logged_losses("ranks");
    ASSERT_EQ(a.size(), static_cast<size_t>(steps));
    ASSERT_EQ(b.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kTolerance) << "step " << i;
    const NamedTensors single_state = last_state("single");
    expect_same_state(single_state, last_state("ranks"), "the last checkpoints");

    // One process resumes the ranks' run from its middle and ends where the uninterrupted one did.
    fs::create_directories(fs::path(root_) / "resumed" / "checkpoints");
    fs::copy_file(fs::path(root_) / "ranks" / "checkpoints" / "checkpoint_0000.safetensors",
                  fs::path(root_) / "resumed" / "checkpoints" / "last.safetensors");
    PretrainConfig resume = config("resumed", /*distributed=*/false, 0);
    resume.resume = "auto";
    const PretrainResult resumed = pretrain(resume);
    EXPECT_EQ(resumed.position.step, steps);
    expect_same_state(single_state, last_state("resumed"), "the resumed run");

    // Another group count is another training: refused, with how to resume it.
    PretrainConfig other = config("resumed", /*distributed=*/false, 0);
    other.resume = (fs::path(root_) / "ranks" / "checkpoints" / "checkpoint_0000.safetensors").string();
    other.save_dir = (fs::path(root_) / "other").string();
    other.moco.bn_groups = 2 * W;
    const std::string error = engine::testing::error_of([&] { pretrain(other); });
    EXPECT_NE(error.find("bn_groups_total: checkpoint " + std::to_string(W) + ", this run " + std::to_string(2 * W)),
              std::string::npos)
        << error;
    EXPECT_NE(error.find("mpirun -np W"), std::string::npos) << error;
  }
  world().barrier();
}

TEST_F(DistributedTrainerTest, SimclrRanksWithLarsTrainTheOneProcessRun) {
  const int W = world().world_size();
  auto simclr = [&](const std::string& run, bool distributed) {
    PretrainConfig c = config(run, distributed, 0);
    c.method = Method::SimClr;
    c.simclr = small_simclr();
    c.simclr.bn_groups = distributed ? 1 : W;
    c.optimizer = OptimizerKind::Lars;
    c.lr = 0.3;
    c.weight_decay = 1e-6;
    c.epochs = 1;
    return c;
  };
  pretrain(simclr("simclr_ranks", /*distributed=*/true));
  if (world().is_root()) {
    pretrain(simclr("simclr_single", /*distributed=*/false));
    const std::vector<double> a = logged_losses("simclr_single"), b = logged_losses("simclr_ranks");
    ASSERT_EQ(a.size(), static_cast<size_t>(16 / (kPerRank * W)));
    ASSERT_EQ(b.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kTolerance) << "step " << i;
    expect_same_state(last_state("simclr_single"), last_state("simclr_ranks"), "SimCLR's last checkpoints");
  }
  world().barrier();
}

// The supervised baseline: each rank's loss is the mean over its rows, the gradient average makes
// it the global batch's; the validation at the end counts every rank's shard.
TEST_F(DistributedTrainerTest, SupervisedRanksTrainTheOneProcessRun) {
  const int W = world().world_size();
  auto supervised = [&](const std::string& run, bool distributed) {
    PretrainConfig c = config(run, distributed, 0);
    c.method = Method::Supervised;
    c.supervised.arch = "resnet18";
    c.supervised.small_stem = true;
    c.supervised.width = 8;
    c.supervised.bn_groups = distributed ? 1 : W;
    c.strategy = MaskStrategy::None;
    c.num_nonsem = 0;
    c.epochs = 1;
    return c;
  };
  const PretrainResult ranks = pretrain(supervised("supervised_ranks", /*distributed=*/true));
  if (world().is_root()) {
    const PretrainResult single = pretrain(supervised("supervised_single", /*distributed=*/false));
    const std::vector<double> a = logged_losses("supervised_single"), b = logged_losses("supervised_ranks");
    ASSERT_EQ(a.size(), static_cast<size_t>(16 / (kPerRank * W)));
    ASSERT_EQ(b.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kTolerance) << "step " << i;
    expect_same_state(last_state("supervised_single"), last_state("supervised_ranks"), "the supervised checkpoints");
    EXPECT_EQ(ranks.val_top1, single.val_top1);
  }
  world().barrier();
}

TEST_F(DistributedTrainerTest, AGlobalBatchThatDoesNotDivideIsRefusedOnEveryRank) {
  if (world().world_size() == 1) GTEST_SKIP() << "needs more than one rank";
  PretrainConfig c = config("odd", /*distributed=*/true, 1);
  c.batch_size = kPerRank * world().world_size() + 1;
  const std::string error = engine::testing::error_of([&] { pretrain(c); });
  EXPECT_NE(error.find("is the global batch"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(fs::path(root_) / "odd"));
}

}  // namespace
}  // namespace engine::ssl
