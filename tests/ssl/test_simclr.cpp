// test_simclr.cpp - SimCLR behind the method seam: its steps (views in BatchNorm groups, hard
// negatives that neither train nor move the running statistics), the masked step, and pretraining
// that checkpoints, resumes bit for bit and is evaluated like MoCo's. Also: a MoCo checkpoint
// written before the seam existed still resumes (to the loss the old program computed) and
// evaluates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/synth.h"
#include "engine/autograd.h"
#include "engine/metrics_log.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/layers.h"
#include "ops/l2_normalize.h"
#include "ssl/eval/backbone.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/methods/simclr.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using testing::all_close;
using testing::error_of;
using testing::TempDir;

SimclrConfig tiny_config() {
  SimclrConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.width = 8;
  c.dim = 8;
  c.temperature = 0.2;
  return c;
}

Tensor images(int64_t n, uint64_t seed, int64_t side = 16) {
  Tensor x = Tensor::empty({n, 3, side, side});
  Generator gen(seed);
  normal_(x, gen);
  return x;
}

// Every running statistic of `net` on the host, in order.
std::vector<double> running_statistics(const nn::Module& net) {
  std::vector<double> out;
  for (const auto& [name, t] : net.named_buffers()) {
    const std::vector<double> v = t.to(DType::f64).to_vector<double>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(SimCLR, EncoderHasTheMlpHeadAndAFiniteLossWhoseGradientReachesIt) {
  SimCLR simclr(tiny_config(), 1, Device::cpu());
  // The head: Linear(F, F) - ReLU - Linear(F, dim), F = 8 * width for ResNet-18.
  const NamedTensors state = simclr.state_dict();
  auto shape_of = [&](const std::string& name) {
    for (const auto& [n, t] : state)
      if (n == name) return t.shape();
    return Shape{};
  };
  EXPECT_EQ(shape_of("encoder.fc.0.weight"), (Shape{64, 64}));
  EXPECT_EQ(shape_of("encoder.fc.2.weight"), (Shape{8, 64}));
  const ContrastiveOutput out = simclr.forward(images(4, 2), images(4, 3));
  EXPECT_EQ(out.rows, 8);  // both views are anchors
  const double loss = out.loss.item();
  // At initialisation the 2N - 1 = 7 logits of a row are close: the loss is near log 7.
  EXPECT_GT(loss, 0.5 * std::log(7.0));
  EXPECT_LT(loss, 2.0 * std::log(7.0));
  simclr.encoder().zero_grad();
  out.loss.backward();
  double gradient_norm2 = 0;
  for (const float g : simclr.encoder().flat_gradients().to_vector<float>()) gradient_norm2 += double{g} * g;
  EXPECT_GT(gradient_norm2, 0.0);
}

TEST(SimCLR, EachBatchNormGroupHoldsBothViewsOfItsImages) {
  SimclrConfig c = tiny_config();
  c.bn_groups = 2;
  SimCLR grouped(c, 4, Device::cpu());
  SimCLR reference(tiny_config(), 4, Device::cpu());  // one group: we feed it group by group
  const Tensor a = images(4, 5), b = images(4, 6);
  NoGradGuard no_grad;
  const Tensor z = grouped.encode_views(a, b);  // (8, D): a's rows, then b's
  for (int64_t g = 0; g < 2; ++g) {
    const Tensor both = Tensor::empty({4, 3, 16, 16});  // the group: a's two images, then b's
    both.slice(0, 0, 2).copy_(a.slice(0, 2 * g, 2 * g + 2));
    both.slice(0, 2, 4).copy_(b.slice(0, 2 * g, 2 * g + 2));
    const Tensor expected = l2_normalize(reference.encoder().forward(both));  // (4, D)
    EXPECT_TRUE(all_close(z.slice(0, 2 * g, 2 * g + 2), expected.slice(0, 0, 2), 1e-5, 1e-6)) << "group " << g;
    EXPECT_TRUE(all_close(z.slice(0, 4 + 2 * g, 4 + 2 * g + 2), expected.slice(0, 2, 4), 1e-5, 1e-6)) << "group " << g;
  }
}

TEST(SimCLR, HardNegativesNeitherTrainNorMoveTheRunningStatistics) {
  SimCLR simclr(tiny_config(), 7, Device::cpu());
  const std::vector<double> before = running_statistics(simclr.encoder());
  Tensor hard = Tensor::empty({4, 2, 3, 16, 16});
  Generator gen(8);
  normal_(hard, gen);
  const Tensor t = simclr.encode_hard_negatives(hard);  // (4, 2, D)
  EXPECT_EQ(t.shape(), (Shape{4, 2, 8}));
  EXPECT_FALSE(t.requires_grad());
  EXPECT_EQ(running_statistics(simclr.encoder()), before);
  // Unit rows, and copy h of image i is the encoding of that view among the batch of copies h.
  const std::vector<float> v = t.to_vector<float>();
  for (int64_t r = 0; r < 8; ++r) {
    double norm = 0;
    for (int64_t d = 0; d < 8; ++d) norm += v[r * 8 + d] * v[r * 8 + d];
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
  // A training forward does move them.
  simclr.forward(images(4, 9), images(4, 10));
  EXPECT_NE(running_statistics(simclr.encoder()), before);
}

TEST(SimCLR, MaskedStepUsesItsOwnMapsAndAppendsHardNegatives) {
  MaskingConfig mc;
  mc.strategy = MaskStrategy::Hp;
  mc.saliency.kind = SaliencySourceKind::Online;
  mc.num_nonsem = 2;
  mc.seed = 3;
  const SaliencyGuidedMasking masking(mc, Device::cpu());
  SimCLR a(tiny_config(), 11, Device::cpu()), b(tiny_config(), 11, Device::cpu());
  const Tensor v1 = images(4, 12, 32), v2 = images(4, 13, 32);
  MaskedBatch record;
  const ContrastiveOutput out = a.forward_masked(v1, v2, masking, 5, &record);
  EXPECT_EQ(record.query.shape(), (Shape{4, 3, 32, 32}));
  EXPECT_EQ(record.hard_negative.shape(), (Shape{4, 2, 3, 32, 32}));
  EXPECT_TRUE(record.saliency_query.defined() && record.saliency_key.defined());
  EXPECT_TRUE(record.high_passed);
  // By hand on a twin: the two views it saw, the hard negatives it saw, the loss. The running
  // statistics end as after the trained forward alone: the maps' forwards leave no trace.
  const Tensor z = b.encode_views(record.query, record.key);
  const Tensor t = b.encode_hard_negatives(record.hard_negative);
  const ContrastiveOutput by_hand = b.contrast(z, t);
  EXPECT_EQ(out.loss.item(), by_hand.loss.item());
  EXPECT_EQ(running_statistics(a.encoder()), running_statistics(b.encoder()));
  // The hard-negative columns count: without them the loss is lower (they add to every row's sum).
  EXPECT_GT(by_hand.loss.item(), b.contrast(z, Tensor()).loss.item());
}

TEST(SimCLR, StateDictRoundTripsAndRefusesAnotherMethodsState) {
  SimCLR a(tiny_config(), 1, Device::cpu()), b(tiny_config(), 2, Device::cpu());
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(all_close(a.encoder().flat_parameters(), b.encoder().flat_parameters(), 0, 0));
  NamedTensors moco_like = a.state_dict();
  moco_like.emplace_back("queue", Tensor::zeros({8, 16}));
  EXPECT_NE(error_of([&] { b.load_state_dict(moco_like); }).find("encoder.* only, found 'queue'"), std::string::npos);
  EXPECT_EQ(a.model_metadata().at("method"), "simclr");
}

// One SimCLR step on CUDA against the CPU (same seed, same views): plain with BatchNorm in 2 groups
// (the grouped forward and its reordering), and masked with hp, the encoder's own saliency and one
// hard negative. Tolerances as MoCo's twin test (test_moco.cpp): the loss to f32 rounding, the
// gradient as a whole (relative L2), since a ReLU input within rounding of zero may take the
// other side on the other device.
void check_cuda_step_matches_cpu(bool masked) {
  SimclrConfig c = tiny_config();
  c.bn_groups = 2;
  SimCLR cpu(c, 20, Device::cpu()), gpu(c, 20, Device::cuda());
  const int64_t side = masked ? 32 : 16;
  const Tensor v1 = images(8, 100, side), v2 = images(8, 101, side);
  ContrastiveOutput a, b;
  if (masked) {
    MaskingConfig mc;
    mc.strategy = MaskStrategy::Hp;
    mc.saliency.kind = SaliencySourceKind::Online;
    mc.num_nonsem = 1;
    mc.bn_groups = 2;
    mc.seed = 5;
    const SaliencyGuidedMasking on_cpu(mc, Device::cpu()), on_gpu(mc, Device::cuda());
    a = cpu.forward_masked(v1, v2, on_cpu, 3);
    b = gpu.forward_masked(v1.to(Device::cuda()), v2.to(Device::cuda()), on_gpu, 3);
  } else {
    a = cpu.forward(v1, v2);
    b = gpu.forward(v1.to(Device::cuda()), v2.to(Device::cuda()));
  }
  EXPECT_NEAR(b.loss.item(), a.loss.item(), 1e-4 * std::max(1.0, std::fabs(a.loss.item())));
  EXPECT_EQ(b.correct.to_vector<int64_t>(), a.correct.to_vector<int64_t>());
  EXPECT_EQ(b.rows, 16);
  a.loss.backward();
  b.loss.backward();
  const std::vector<float> g = gpu.encoder().flat_gradients().to_vector<float>();
  const std::vector<float> e = cpu.encoder().flat_gradients().to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    diff += (static_cast<double>(g[i]) - e[i]) * (static_cast<double>(g[i]) - e[i]);
    norm += static_cast<double>(e[i]) * e[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-2) << "relative L2 distance of the gradients";
  EXPECT_GT(norm, 1e-8) << "the gradient should not vanish";
  // The running statistics moved by the trained forward alone, on both devices alike.
  const std::vector<double> rc = running_statistics(cpu.encoder()), rg = running_statistics(gpu.encoder());
  ASSERT_EQ(rc.size(), rg.size());
  for (size_t i = 0; i < rc.size(); ++i) EXPECT_NEAR(rg[i], rc[i], 1e-4 * std::max(1.0, std::fabs(rc[i]))) << i;
}

TEST(SimCLR, CudaGroupedStepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  check_cuda_step_matches_cpu(false);
}

TEST(SimCLR, CudaMaskedStepWithHardNegativesMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  check_cuda_step_matches_cpu(true);
}

class SimclrTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("simclr_trainer");
    data::SynthOptions o;
    o.classes = 2;
    o.train_per_class = 8;
    o.val_per_class = 2;
    o.size = 32;
    o.threads = 1;
    data::write_synth_dataset((dir_->path() / "synth").string(), o);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // SimCLR on ResNet-18 (width 8), 32 pixels, batches of 8: 2 batches per epoch; LARS.
  static PretrainConfig config(const std::string& run, int64_t max_steps, bool masked) {
    PretrainConfig c;
    c.method = Method::SimClr;
    c.data = (dir_->path() / "synth").string();
    c.save_dir = (dir_->path() / run).string();
    c.simclr = tiny_config();
    c.simclr.bn_groups = 2;
    c.optimizer = OptimizerKind::Lars;
    c.lr = 0.3;
    c.weight_decay = 1e-6;
    c.batch_size = 8;
    c.image_size = 32;
    c.epochs = 3;
    c.cos = true;
    c.aug_plus = true;
    c.workers = 2;
    c.print_freq = 1;
    c.seed = 5;
    c.max_steps = max_steps;
    c.args_json = R"({"image_size": 32, "bn_groups": 2})";
    if (masked) {
      c.strategy = MaskStrategy::Hp;
      c.saliency.kind = SaliencySourceKind::Online;
      c.num_nonsem = 1;
    }
    return c;
  }

  static TempDir* dir_;
};

TempDir* SimclrTrainerTest::dir_ = nullptr;

TEST_F(SimclrTrainerTest, PlainAndMaskedRunsResumeBitForBitAndAreEvaluated) {
  for (const bool masked : {false, true}) {
    const std::string name = masked ? "hp" : "plain";
    const PretrainResult straight = pretrain(config(name + "_straight", 3, masked));
    pretrain(config(name + "_resumed", 2, masked));  // an epoch's end
    PretrainConfig more = config(name + "_resumed", 3, masked);
    more.resume = "auto";
    const PretrainResult resumed = pretrain(more);
    EXPECT_TRUE(std::isfinite(straight.last_loss)) << name;
    EXPECT_EQ(resumed.last_loss, straight.last_loss) << name << ": the step after the checkpoint";
    // The checkpoints hold the same tensors to the bit: encoder and LARS's momentum.
    const SafetensorsFile a = load_safetensors((dir_->path() / (name + "_straight") / "checkpoints" /
                                                "last.safetensors").string());
    const SafetensorsFile b = load_safetensors((dir_->path() / (name + "_resumed") / "checkpoints" /
                                                "last.safetensors").string());
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
      EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
      EXPECT_TRUE(all_close(a.tensors[i].second, b.tensors[i].second, 0, 0)) << a.tensors[i].first;
    }
    EXPECT_EQ(a.metadata.at("method"), "simclr");
    EXPECT_EQ(a.metadata.at("optimizer"), "lars");
    EXPECT_TRUE(a.contains("optimizer.momentum_buffer.encoder.conv1.weight"));
    // Evaluation finds the encoder without knowing the method: kNN on the frozen backbone.
    BackboneSpec spec;
    spec.pretrained = (dir_->path() / (name + "_straight") / "checkpoints" / "last.safetensors").string();
    const Backbone backbone = load_backbone(spec, Device::cpu());
    EXPECT_EQ(backbone.trained_on_high_pass, masked);
    EXPECT_EQ(backbone.image_size, 32);
    EXPECT_NE(backbone.description.find("SimCLR's encoder after 3 steps"), std::string::npos) << backbone.description;
    FeatureOptions fo;
    fo.batch_size = 8;
    fo.workers = 1;
    fo.high_pass = masked;
    KnnOptions ko;
    ko.k = 4;
    const TopkCounts counts = knn_on_folders(*backbone.net, (dir_->path() / "synth").string(), 32, fo, ko);
    EXPECT_EQ(counts.total, 4);
  }
}

// Between print steps a SimCLR step reads nothing back to the host (engine/tensor.h counts reads,
// CPU tensors included, so the CPU run checks the same logic): plain, and masked with its own
// saliency and a hard negative, both with BatchNorm in 2 groups (the reordered forward).
void check_steady_state_steps_read_nothing(PretrainConfig c, const std::string& what) {
  c.epochs = 2;
  pretrain(c);
  int64_t steady = 0;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string())) {
    if (line.at("kind").get<std::string>() != "step" || line.at("batch").get<int64_t>() == 0) continue;
    EXPECT_EQ(line.at("host_reads").get<int64_t>(), 0) << what << ", step " << line.at("step");
    ++steady;
  }
  EXPECT_EQ(steady, 2) << what;  // 2 epochs of 2 batches; the first of each epoch reads its shuffle
}

TEST_F(SimclrTrainerTest, SteadyStateStepsNeverReadFromTheHost) {
  check_steady_state_steps_read_nothing(config("reads_plain", 0, false), "plain");
  check_steady_state_steps_read_nothing(config("reads_hp", 0, true), "hp");
}

TEST_F(SimclrTrainerTest, CudaSteadyStateStepsNeverReadFromTheDevice) {
  SKIP_WITHOUT_CUDA();
  for (const bool masked : {false, true}) {
    PretrainConfig c = config(masked ? "reads_hp_cuda" : "reads_plain_cuda", 0, masked);
    c.device = Device::cuda();
    check_steady_state_steps_read_nothing(c, masked ? "hp on CUDA" : "plain on CUDA");
  }
}

TEST_F(SimclrTrainerTest, RefusesMocoFlagsItCannotUseAndAnotherMethodsCheckpoint) {
  // SimCLR has no key encoder to take maps from.
  PretrainConfig momentum = config("momentum_source", 1, true);
  momentum.saliency.kind = SaliencySourceKind::Momentum;
  EXPECT_NE(error_of([&] { pretrain(momentum); }).find("--saliency momentum is MoCo's key encoder"), std::string::npos);
  // A MoCo run's folder cannot be continued as SimCLR.
  PretrainConfig moco = config("switch", 1, false);
  moco.method = Method::MocoV2;
  moco.optimizer = OptimizerKind::Sgd;
  moco.moco.arch = "resnet18";
  moco.moco.small_stem = true;
  moco.moco.width = 8;
  moco.moco.dim = 8;
  moco.moco.queue_size = 16;
  moco.moco.bn_groups = 2;
  pretrain(moco);
  PretrainConfig simclr = config("switch", 2, false);
  simclr.resume = "auto";
  const std::string message = error_of([&] { pretrain(simclr); });
  EXPECT_NE(message.find("method: checkpoint mocov2, this run simclr"), std::string::npos) << message;
  EXPECT_NE(message.find("optimizer: checkpoint sgd, this run lars"), std::string::npos) << message;
}

// tests/fixtures/checkpoints/mocov2_hp_before_method_seam.safetensors was written by `moco
// pretrain` before SimCLR and the method seam existed (commit e78f350), by
//   moco synth DATA --classes 3 --train-per-class 4 --val-per-class 2 --size 32
//   moco pretrain DATA --save-dir RUN --arch resnet18 --small-stem --width 2 --image-size 32 -b 4
//     --moco-k 8 --moco-dim 8 --mlp --aug-plus --bn-groups 2 --max-steps 2 --strategy hp
//     --num-nonsem 1 --seed 3 -j 1 --device cpu
// and that program, resumed to step 3, logged the loss 8.712809562683105.
TEST(LegacyCheckpoint, AMocoCheckpointFromBeforeTheSeamResumesToTheSameLossAndEvaluates) {
  TempDir dir("legacy_checkpoint");
  data::SynthOptions o;
  o.classes = 3;
  o.train_per_class = 4;
  o.val_per_class = 2;
  o.size = 32;
  o.threads = 1;
  data::write_synth_dataset((dir.path() / "data").string(), o);
  const std::string fixture =
      std::string(ENGINE_TEST_FIXTURES) + "/checkpoints/mocov2_hp_before_method_seam.safetensors";
  fs::create_directories(dir.path() / "run" / "checkpoints");
  fs::copy_file(fixture, dir.path() / "run" / "checkpoints" / "last.safetensors");
  const SafetensorsFile file = load_safetensors(fixture);
  EXPECT_EQ(file.metadata.count("method"), 0u) << "the fixture must predate the method seam";

  PretrainConfig c;
  c.data = (dir.path() / "data").string();
  c.save_dir = (dir.path() / "run").string();
  c.moco.arch = "resnet18";
  c.moco.small_stem = true;
  c.moco.width = 2;
  c.moco.dim = 8;
  c.moco.queue_size = 8;
  c.moco.mlp = true;
  c.moco.bn_groups = 2;
  c.batch_size = 4;
  c.image_size = 32;
  c.aug_plus = true;
  c.strategy = MaskStrategy::Hp;
  c.num_nonsem = 1;
  c.seed = 3;
  c.workers = 1;
  c.max_steps = 3;
  c.resume = "auto";
  c.args_json = file.metadata.at("args");
  const PretrainResult r = pretrain(c);
  EXPECT_EQ(r.position.step, 3);
  EXPECT_EQ(static_cast<float>(r.last_loss), 8.712809562683105f);

  // And it evaluates: the frozen encoder_q, high-passed as its pretraining, at its image size.
  BackboneSpec spec;
  spec.pretrained = fixture;
  const Backbone backbone = load_backbone(spec, Device::cpu());
  EXPECT_TRUE(backbone.trained_on_high_pass);
  EXPECT_EQ(backbone.image_size, 32);
  FeatureOptions fo;
  fo.batch_size = 4;
  fo.workers = 1;
  fo.high_pass = true;
  KnnOptions ko;
  const TopkCounts counts = knn_on_folders(*backbone.net, (dir.path() / "data").string(), 32, fo, ko);
  EXPECT_EQ(counts.total, 6);
  EXPECT_NEAR(counts.top1(), 100.0 / 3.0, 1e-9);  // 2 of 6, as that program's `moco knn` reported
}

}  // namespace
}  // namespace engine::ssl
