// test_trainer.cpp - the pretraining loop on a tiny synthetic dataset: resuming (at an epoch's end
// and mid-epoch) continues bit for bit, the logs and checkpoints hold what they should, and bad
// flags or a diverging loss stop the run with a clear message and the last good checkpoint kept.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/synth.h"
#include "engine/metrics_log.h"
#include "engine/serialize.h"
#include "engine/tensorboard_reader.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("trainer");
    data::SynthOptions o;
    o.classes = 2;
    o.train_per_class = 8;
    o.val_per_class = 1;
    o.size = 24;
    o.threads = 1;
    data::write_synth_dataset((dir_->path() / "synth").string(), o);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // ResNet-18, small stem, 16 pixels, batches of 8 in 2 BatchNorm groups: 2 batches per epoch.
  static PretrainConfig config(const std::string& run, int64_t max_steps) {
    PretrainConfig c;
    c.data = (dir_->path() / "synth").string();
    c.save_dir = (dir_->path() / run).string();
    c.moco.arch = "resnet18";
    c.moco.small_stem = true;
    c.moco.dim = 8;
    c.moco.queue_size = 16;
    c.moco.temperature = 0.2;
    c.moco.mlp = true;
    c.moco.bn_groups = 2;
    c.batch_size = 8;
    c.image_size = 16;
    c.epochs = 3;
    c.cos = true;
    c.aug_plus = true;
    c.workers = 2;
    c.print_freq = 1;
    c.seed = 5;
    c.max_steps = max_steps;
    c.args_json = "{}";
    return c;
  }

  // The same at 32 pixels (a 4 x 4 grid, so the query masks take 0 to 4 cells), with masking and
  // one hard negative per image, weighted by alpha 2.
  static PretrainConfig masked_config(const std::string& run, int64_t max_steps, const std::string& strategy) {
    PretrainConfig c = config(run, max_steps);
    c.image_size = 32;
    c.strategy = parse_mask_strategy(strategy);
    c.num_nonsem = 1;
    c.moco.alpha = 2.0;
    return c;
  }

  static TempDir* dir_;
};

TempDir* TrainerTest::dir_ = nullptr;

TEST_F(TrainerTest, ResumingContinuesBitForBitAtAnEpochEndAndMidEpoch) {
  const PretrainResult straight3 = pretrain(config("straight3", 3));
  const PretrainResult straight4 = pretrain(config("straight4", 4));
  EXPECT_EQ(straight4.position.step, 4);
  EXPECT_EQ(straight4.position.epoch, 2);  // 2 epochs of 2 batches done
  EXPECT_EQ(straight3.position.epoch, 1);
  EXPECT_EQ(straight3.position.batch, 1);  // stopped mid-epoch

  // Stopped at an epoch's end (step 2), resumed to step 3.
  pretrain(config("resumed", 2));
  PretrainConfig more = config("resumed", 3);
  more.resume = "auto";
  const PretrainResult resumed3 = pretrain(more);
  EXPECT_EQ(resumed3.last_loss, straight3.last_loss) << "the step after an epoch-end checkpoint";
  // Stopped mid-epoch (step 3), resumed to step 4.
  more.max_steps = 4;
  const PretrainResult resumed4 = pretrain(more);
  EXPECT_EQ(resumed4.last_loss, straight4.last_loss) << "the step after a mid-epoch checkpoint";

  // The log has every step once, in order, despite the two resumes.
  const std::vector<nlohmann::json> lines = MetricsLog::read((dir_->path() / "resumed" / "metrics.jsonl").string());
  std::vector<int64_t> steps;
  for (const nlohmann::json& line : lines)
    if (line.at("kind").get<std::string>() == "step") steps.push_back(line.at("step").get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4}));
}

// A finished run resumed again (a job script run twice) trains nothing: the checkpoint stays at
// --max-steps, mid-epoch or at an epoch's end, and at the last epoch.
TEST_F(TrainerTest, ResumingAFinishedRunTrainsNothing) {
  for (const int64_t max_steps : {3, 4}) {
    const std::string run = fmt::format("finished{}", max_steps);
    pretrain(config(run, max_steps));
    const fs::path last = dir_->path() / run / "checkpoints" / "last.safetensors";
    const auto written = fs::last_write_time(last);
    PretrainConfig again = config(run, max_steps);
    again.resume = "auto";
    const PretrainResult r = pretrain(again);
    EXPECT_EQ(r.position.step, max_steps);
    EXPECT_EQ(load_safetensors(last.string()).metadata.at("step"), std::to_string(max_steps));
    EXPECT_EQ(fs::last_write_time(last), written) << "the finished run's checkpoint was rewritten";
  }
  // All epochs done, no --max-steps.
  PretrainConfig all = config("finished_epochs", 0);
  all.epochs = 1;
  pretrain(all);
  all.resume = "auto";
  EXPECT_EQ(pretrain(all).position.step, 2);
}

// The training step never waits for the device: between two print steps nothing is read back to
// the host (engine/tensor.h counts every read, on the CPU too, so this runs in CI). With
// --print-freq 1 each step is a window of its own; batch 0 of an epoch also draws the epoch's
// shuffle and, when masking, its picture, so only the steps after it are steady state.
void check_steady_state_steps_read_nothing(PretrainConfig c) {
  c.print_freq = 1;
  c.epochs = 2;
  pretrain(c);
  int64_t steady = 0, first_of_epoch_reads = 0;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string())) {
    if (line.at("kind").get<std::string>() != "step") continue;
    const int64_t reads = line.at("host_reads").get<int64_t>();
    if (line.at("batch").get<int64_t>() == 0) {
      first_of_epoch_reads += reads;
    } else {
      EXPECT_EQ(reads, 0) << "step " << line.at("step") << " read tensor values back to the host";
      ++steady;
    }
  }
  EXPECT_EQ(steady, 2);  // 2 epochs of 2 batches
  EXPECT_GT(first_of_epoch_reads, 0) << "the epoch's shuffle is a read: the count should have seen it";
}

TEST_F(TrainerTest, SteadyStateStepsNeverReadFromTheDevice) {
  check_steady_state_steps_read_nothing(config("reads_plain", 0));
  check_steady_state_steps_read_nothing(masked_config("reads_hp", 0, "hp"));
}

TEST_F(TrainerTest, CudaSteadyStateStepsNeverReadFromTheDevice) {
  SKIP_WITHOUT_CUDA();
  PretrainConfig plain = config("reads_plain_cuda", 0);
  plain.device = Device::cuda();
  check_steady_state_steps_read_nothing(plain);
  PretrainConfig hp = masked_config("reads_hp_cuda", 0, "hp");
  hp.device = Device::cuda();
  check_steady_state_steps_read_nothing(hp);
}

TEST_F(TrainerTest, WritesCheckpointsMetricsTensorBoardAndArgs) {
  PretrainConfig c = config("outputs", 4);
  c.args_json = R"({"arch": "resnet18"})";
  const PretrainResult r = pretrain(c);
  const fs::path dir = c.save_dir;
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "checkpoint_0000.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "checkpoint_0001.safetensors"));
  EXPECT_EQ(r.last_checkpoint, (dir / "checkpoints" / "checkpoint_0001.safetensors").string());

  const SafetensorsFile last = load_safetensors((dir / "checkpoints" / "last.safetensors").string());
  EXPECT_EQ(last.metadata.at("epoch"), "2");
  EXPECT_EQ(last.metadata.at("batch"), "0");
  EXPECT_EQ(last.metadata.at("step"), "4");
  EXPECT_EQ(last.metadata.at("args"), c.args_json);
  EXPECT_EQ(last.at("queue").shape(), (Shape{8, 16}));
  EXPECT_EQ(last.at("queue_ptr").to_vector<int64_t>(), std::vector<int64_t>{0});  // 4 steps x 8 keys, mod 16
  EXPECT_EQ(last.at("encoder_q.fc.0.weight").shape(), (Shape{512, 512}));
  EXPECT_EQ(last.at("optimizer.momentum_buffer.encoder_q.conv1.weight").shape(),
            last.at("encoder_q.conv1.weight").shape());
  EXPECT_TRUE(last.contains("encoder_k.layer4.1.bn2.running_var"));
  EXPECT_FALSE(fs::exists(dir / "checkpoints" / "last.safetensors.tmp"));

  // metrics.jsonl: a line per step and per epoch with the promised fields.
  const std::vector<nlohmann::json> lines = MetricsLog::read((dir / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 6u);  // 4 steps, 2 epochs
  for (const nlohmann::json& line : lines)
    for (const char* key : {"epoch", "step", "loss", "acc1", "acc5", "lr", "img_per_s"})
      EXPECT_TRUE(line.contains(key) && line.at(key).is_number()) << key;
  EXPECT_EQ(lines[2].at("kind").get<std::string>(), "epoch");
  EXPECT_EQ(lines[2].at("step").get<int64_t>(), 2);
  EXPECT_GT(lines[0].at("loss").get<double>(), 0.0);
  EXPECT_NEAR(lines[0].at("lr").get<double>(), 0.03, 1e-12);  // cosine, epoch 0

  // TensorBoard: one event file whose scalars are the logged steps.
  std::vector<fs::path> events;
  for (const auto& entry : fs::directory_iterator(dir / "logs"))
    if (entry.path().filename().string().find("tfevents") != std::string::npos) events.push_back(entry.path());
  ASSERT_EQ(events.size(), 1u);
  int loss_points = 0;
  for (const TensorBoardScalar& s : read_tensorboard_scalars(events[0].string())) {
    if (s.tag != "loss") continue;
    ++loss_points;
    EXPECT_FLOAT_EQ(s.value, static_cast<float>(lines[s.step <= 2 ? s.step - 1 : s.step].at("loss").get<double>()));
  }
  EXPECT_EQ(loss_points, 4);
  EXPECT_TRUE(fs::exists(dir / "args.json"));
}

TEST_F(TrainerTest, TheKnnMonitorRunsEveryNEpochsAndIsLogged) {
  PretrainConfig c = config("knn_monitor", 0);
  c.epochs = 2;
  c.knn_every = 1;
  c.knn_k = 3;
  const PretrainResult r = pretrain(c);
  std::vector<nlohmann::json> knn;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string()))
    if (line.at("kind") == "knn") knn.push_back(line);
  ASSERT_EQ(knn.size(), 2u);  // after epochs 1 and 2
  EXPECT_EQ(knn[1].at("step").get<int64_t>(), 4);
  const double top1 = knn[1].at("knn_top1").get<double>();
  EXPECT_TRUE(top1 == 0.0 || top1 == 50.0 || top1 == 100.0) << top1;  // 2 validation images
  EXPECT_EQ(knn[1].at("knn_top5").get<double>(), 100.0);                // 2 classes
  EXPECT_EQ(r.last_knn_top1, top1);
  // A root without val/ is refused before any training.
  PretrainConfig bad = config("knn_bad", 0);
  bad.knn_every = 1;
  bad.knn_data = (dir_->path() / "synth" / "train").string();
  EXPECT_THROW(pretrain(bad), Error);
  EXPECT_FALSE(fs::exists(fs::path(bad.save_dir) / "checkpoints"));
}

TEST_F(TrainerTest, BadFlagsAndAnOccupiedSaveDirAreClearErrors) {
  PretrainConfig c = config("bad", 1);
  c.moco.queue_size = 20;
  try {
    pretrain(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--moco-k 20 is not a multiple of the batch size -b 8"), std::string::npos)
        << e.what();
  }
  c = config("bad_blur", 1);
  c.blur_sigma = {0.5, 0.1};
  EXPECT_THROW(pretrain(c), Error);
  pretrain(config("occupied", 1));
  try {
    pretrain(config("occupied", 2));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run"), std::string::npos) << e.what();
  }
  PretrainConfig other = config("occupied", 2);
  other.resume = "auto";
  other.moco.dim = 16;
  try {
    pretrain(other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("moco_dim: checkpoint 8, this run 16"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, ADivergingLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  PretrainConfig c = config("diverges", 0);
  c.lr = 1e300;  // infinite in f32: the first step sends the weights to infinity
  c.save_freq_steps = 1;
  try {
    pretrain(c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the loss became NaN at epoch 0, batch 1 (step 1)"), std::string::npos)
        << e.what();
  }
  const SafetensorsFile last = load_safetensors((fs::path(c.save_dir) / "checkpoints" / "last.safetensors").string());
  EXPECT_EQ(last.metadata.at("step"), "1");
}

TEST_F(TrainerTest, EveryMaskingStrategyTrainsWithHardNegativesAndDrawsItsFirstBatch) {
  for (const auto& [strategy, quirks] : std::vector<std::pair<std::string, bool>>{
           {"hp", false}, {"blur", false}, {"mean", false}, {"hp", true}}) {
    PretrainConfig c = masked_config("masked_" + strategy + (quirks ? "_quirks" : ""), 3, strategy);
    c.moco.reference_quirks = quirks;
    const PretrainResult r = pretrain(c);
    EXPECT_EQ(r.position.step, 3) << strategy;
    EXPECT_TRUE(std::isfinite(r.first_loss) && std::isfinite(r.last_loss)) << strategy;
    // The first batch of each epoch as a picture; the strategy in the checkpoint.
    EXPECT_GT(fs::file_size(fs::path(c.save_dir) / "images" / "epoch_0000.jpg"), 1000u) << strategy;
    EXPECT_TRUE(fs::exists(fs::path(c.save_dir) / "images" / "epoch_0001.jpg")) << strategy;
    const SafetensorsFile last =
        load_safetensors((fs::path(c.save_dir) / "checkpoints" / "last.safetensors").string());
    EXPECT_EQ(last.metadata.at("strategy"), strategy);
    // Each logged step carries the share of foreground cells (at least 13/49-like, at most all).
    const std::vector<nlohmann::json> lines = MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string());
    ASSERT_FALSE(lines.empty());
    const double fg = lines[0].at("fg_ratio").get<double>();
    EXPECT_GT(fg, 0.2) << strategy;
    EXPECT_LE(fg, 1.0) << strategy;
  }
}

TEST_F(TrainerTest, AMaskedRunResumesBitForBitAndRefusesAnotherStrategy) {
  const PretrainResult straight = pretrain(masked_config("masked_straight", 3, "hp"));
  pretrain(masked_config("masked_resumed", 2, "hp"));
  PretrainConfig more = masked_config("masked_resumed", 3, "hp");
  more.resume = "auto";
  const PretrainResult resumed = pretrain(more);
  EXPECT_EQ(resumed.last_loss, straight.last_loss);  // the masks are a function of (seed, step)
  PretrainConfig other = masked_config("masked_resumed", 4, "blur");
  other.resume = "auto";
  try {
    pretrain(other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("strategy: checkpoint hp, this run blur"), std::string::npos) << e.what();
  }
  PretrainConfig unmasked = config("hard_without_masking", 1);
  unmasked.num_nonsem = 1;
  try {
    pretrain(unmasked);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("choose a masking --strategy"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::ssl
