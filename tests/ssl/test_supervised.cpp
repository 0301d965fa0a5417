// test_supervised.cpp - the supervised baseline behind the method seam (ssl/methods/supervised.h):
// its step (cross-entropy of the classifier's logits; the accuracy counted on the device as
// ssl/eval/accuracy.h counts it), training through the trainer that learns, resumes bit for bit on
// the CPU, never reads from the device between print steps and ends with the validation top-1; its
// checkpoint evaluated like a pretraining one; and the refusals (masking, another method's
// checkpoint, another class count, a folder of one class).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "data/codec.h"
#include "engine/metrics_log.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/optimizer.h"
#include "ops/cross_entropy.h"
#include "ssl/eval/accuracy.h"
#include "ssl/eval/backbone.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/methods/supervised.h"
#include "ssl/run/checkpoint.h"
#include "ssl/run/export.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/data/temp_dataset.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using testing::all_close;
using testing::error_of;
using testing::TempDir;

// root/{train,val}/<class>/<i>.png: each class a colour of its own (red, green, blue, yellow, ...)
// under strong per-pixel noise, so the crops and flips of the training augmentation keep the class
// and a small ResNet learns it in a few epochs.
void write_colour_dataset(const fs::path& root, int classes, int train_per_class, int val_per_class, int side = 24) {
  static const int kColours[6][3] = {{200, 50, 50}, {50, 200, 50}, {50, 50, 200},
                                     {200, 200, 50}, {200, 50, 200}, {50, 200, 200}};
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> noise(-60, 60);
  for (const auto& [split, count] : {std::pair<const char*, int>{"train", train_per_class}, {"val", val_per_class}})
    for (int c = 0; c < classes; ++c)
      for (int i = 0; i < count; ++i) {
        data::Image image(side, side);
        for (int y = 0; y < side; ++y)
          for (int x = 0; x < side; ++x)
            for (int k = 0; k < 3; ++k)
              image.at(x, y, k) = static_cast<uint8_t>(std::clamp(kColours[c % 6][k] + noise(gen), 0, 255));
        data::testing::write_bytes(root / split / ("class" + std::to_string(c)) / (std::to_string(i) + ".png"),
                                   data::encode_png(image));
      }
}

SupervisedConfig tiny_config(int64_t classes = 3) {
  SupervisedConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.width = 8;
  c.num_classes = classes;
  return c;
}

Tensor images(int64_t n, uint64_t seed, int64_t side = 16) {
  Tensor x = Tensor::empty({n, 3, side, side});
  Generator gen(seed);
  normal_(x, gen);
  return x;
}

TEST(Supervised, TheClassifierIsTheResNetWithATorchvisionFcAndItsLossIsCrossEntropy) {
  Supervised model(tiny_config(), 1, Device::cpu());
  EXPECT_EQ(model.views_per_image(), 1u);
  EXPECT_EQ(model.own_saliency_source(), SaliencySourceKind::Online);
  EXPECT_EQ(&model.saliency_encoder(), &model.online_encoder());
  // The fc is torchvision's Linear(F, C) from the seed: the model make_resnet builds with C classes.
  const auto reference = nn::make_resnet({.arch = "resnet18", .num_classes = 3, .stem = nn::ResNetStem::SmallImage,
                                          .width = 8},
                                         1);
  const NamedTensors mine = model.state_dict(), theirs = reference->state_dict();
  ASSERT_EQ(mine.size(), theirs.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    EXPECT_EQ(mine[i].first, "encoder." + theirs[i].first);
    EXPECT_TRUE(all_close(mine[i].second, theirs[i].second, 0, 0)) << mine[i].first;
  }
  EXPECT_EQ(model.model_metadata().at("num_classes"), "3");
  EXPECT_EQ(model.model_metadata().at("method"), "supervised");

  const Tensor x = images(4, 2);
  const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 2}, {4});
  const ContrastiveOutput out = model.train_forward({{x}, labels, Tensor()}, nullptr, 0, nullptr);
  EXPECT_EQ(out.rows, 4);
  // The same logits through a twin give the same loss by cross_entropy alone.
  Supervised twin(tiny_config(), 1, Device::cpu());
  EXPECT_EQ(out.loss.item(), cross_entropy(twin.encoder().forward(x), labels).item());
  EXPECT_GT(out.loss.item(), 0.5 * std::log(3.0));  // near log 3 at initialisation
  EXPECT_LT(out.loss.item(), 3.0 * std::log(3.0));
  model.encoder().zero_grad();
  out.loss.backward();
  double gradient_norm2 = 0;
  for (const float g : model.encoder().flat_gradients().to_vector<float>()) gradient_norm2 += double{g} * g;
  EXPECT_GT(gradient_norm2, 0.0);
}

// The counts the step leaves on the device are those ssl/eval/accuracy.h computes on the host, ties
// included (integer logits from a small range tie often), and a row whose label scores NaN counts at
// neither k.
TEST(Supervised, TheDeviceCountsAreTheAccuracyHelpersTiesIncluded) {
  for (const int64_t C : {1, 3, 7, 40}) {
    std::mt19937 gen(static_cast<unsigned>(C));
    const int64_t N = 37;
    std::vector<float> logits(static_cast<size_t>(N * C));
    std::vector<int64_t> labels(static_cast<size_t>(N));
    for (float& v : logits) v = static_cast<float>(std::uniform_int_distribution<int>(-2, 2)(gen));
    for (int64_t& y : labels) y = std::uniform_int_distribution<int64_t>(0, C - 1)(gen);
    const Tensor z = Tensor::from_vector(logits, {N, C}), y = Tensor::from_vector(labels, {N});
    const CrossEntropyResult r = cross_entropy_with_accuracy(z, y);
    const TopkCounts expected = topk_counts(z, y);
    EXPECT_EQ(r.correct.to_vector<int64_t>(), (std::vector<int64_t>{expected.correct1, expected.correct5})) << C;
    EXPECT_EQ(r.correct.device(), z.device());
    EXPECT_EQ(r.loss.item(), cross_entropy(z, y).item()) << C;
  }
  const Tensor z = Tensor::from_vector(std::vector<float>{0, 1, 2, std::nanf(""), 0, 0}, {2, 3});
  const Tensor y = Tensor::from_vector(std::vector<int64_t>{2, 0}, {2});
  EXPECT_EQ(cross_entropy_with_accuracy(z, y).correct.to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));
}

TEST(Supervised, CudaCountsAndLossMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(3);
  const int64_t N = 300, C = 1003;  // more classes than a block's threads: each thread takes several
  std::vector<float> logits(static_cast<size_t>(N * C));
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (float& v : logits) v = static_cast<float>(std::uniform_int_distribution<int>(-3, 3)(gen));
  for (int64_t& y : labels) y = std::uniform_int_distribution<int64_t>(0, C - 1)(gen);
  const Tensor z = Tensor::from_vector(logits, {N, C}), y = Tensor::from_vector(labels, {N});
  const CrossEntropyResult cpu = cross_entropy_with_accuracy(z, y);
  const CrossEntropyResult gpu = cross_entropy_with_accuracy(z.to(Device::cuda()), y.to(Device::cuda()));
  EXPECT_EQ(gpu.correct.to_vector<int64_t>(), cpu.correct.to_vector<int64_t>());
  EXPECT_NEAR(gpu.loss.item(), cpu.loss.item(), 1e-6 * std::fabs(cpu.loss.item()));
  // NaN logits: at row 0's label (the row counts at neither k) and at another class of row 1 (it
  // ranks below every number): the kernel counts them as the CPU does.
  std::vector<float> with_nan(logits.begin(), logits.begin() + 4 * C);
  with_nan[static_cast<size_t>(labels[0])] = std::nanf("");
  with_nan[static_cast<size_t>(C + (labels[1] + 1) % C)] = std::nanf("");
  const Tensor zn = Tensor::from_vector(with_nan, {4, C});
  const Tensor yn = Tensor::from_vector(std::vector<int64_t>(labels.begin(), labels.begin() + 4), {4});
  EXPECT_EQ(cross_entropy_with_accuracy(zn.to(Device::cuda()), yn.to(Device::cuda())).correct.to_vector<int64_t>(),
            cross_entropy_with_accuracy(zn, yn).correct.to_vector<int64_t>());
  // The supervised step on CUDA counts as on the CPU.
  Supervised on_cpu(tiny_config(), 4, Device::cpu()), on_gpu(tiny_config(), 4, Device::cuda());
  const Tensor x = images(8, 5);
  const Tensor few = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1}, {8});
  const ContrastiveOutput a = on_cpu.forward(x, few), b = on_gpu.forward(x.to(Device::cuda()), few.to(Device::cuda()));
  EXPECT_EQ(b.correct.to_vector<int64_t>(), a.correct.to_vector<int64_t>());
  EXPECT_NEAR(b.loss.item(), a.loss.item(), 1e-4 * std::max(1.0, std::fabs(a.loss.item())));
}

TEST(Supervised, RefusesAMaskingOneClassAndABatchWithoutItsView) {
  Supervised model(tiny_config(), 1, Device::cpu());
  MaskingConfig mc;
  mc.strategy = MaskStrategy::Hp;
  mc.saliency.kind = SaliencySourceKind::Online;
  const SaliencyGuidedMasking masking(mc, Device::cpu());
  const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2});
  EXPECT_NE(error_of([&] { model.train_forward({{images(2, 1)}, labels, Tensor()}, &masking, 0, nullptr); })
                .find("masking and hard negatives belong to the contrastive methods' step"),
            std::string::npos);
  EXPECT_NE(error_of([&] { model.train_forward({{images(2, 1), images(2, 2)}, labels, Tensor()}, nullptr, 0, nullptr); })
                .find("supervised: a training batch must carry 1 view(s) of each image, found 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Supervised(tiny_config(1), 1, Device::cpu()); }).find("at least 2 classes, found 1"),
            std::string::npos);
}

class SupervisedTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("supervised_trainer");
    write_colour_dataset(dir_->path() / "colours", 3, 8, 2);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // ResNet-18 (width 8, small stem) at 16 pixels, batches of 8 in 2 BatchNorm groups: 24 images,
  // 3 batches per epoch; SGD with a cosine schedule.
  static PretrainConfig config(const std::string& run, int64_t max_steps) {
    PretrainConfig c;
    c.method = Method::Supervised;
    c.data = (dir_->path() / "colours").string();
    c.save_dir = (dir_->path() / run).string();
    c.supervised = tiny_config();
    c.supervised.bn_groups = 2;
    c.lr = 0.1;
    c.batch_size = 8;
    c.image_size = 16;
    c.epochs = 3;
    c.cos = true;
    c.workers = 2;
    c.print_freq = 1;
    c.seed = 5;
    c.max_steps = max_steps;
    c.args_json = R"({"image_size": 16, "bn_groups": 2})";
    return c;
  }

  static fs::path last_checkpoint(const std::string& run) {
    return dir_->path() / run / "checkpoints" / "last.safetensors";
  }

  static TempDir* dir_;
};

TempDir* SupervisedTrainerTest::dir_ = nullptr;

// Resumed bit for bit: stopped at an epoch's end (step 3) and mid-epoch (step 4), resumed
// to step 5, the run ends where the uninterrupted one does: the last loss and every tensor of the
// checkpoint (parameters, running statistics, SGD's momentum) equal to the bit.
TEST_F(SupervisedTrainerTest, ResumesBitForBitOnTheCpu) {
  const PretrainResult straight = pretrain(config("straight", 5));
  EXPECT_EQ(straight.position.step, 5);
  pretrain(config("resumed", 3));  // an epoch's end
  PretrainConfig more = config("resumed", 4);
  more.resume = "auto";
  pretrain(more);  // mid-epoch
  more.max_steps = 5;
  const PretrainResult resumed = pretrain(more);
  EXPECT_TRUE(std::isfinite(straight.last_loss));
  EXPECT_EQ(resumed.last_loss, straight.last_loss);
  const SafetensorsFile a = load_safetensors(last_checkpoint("straight").string());
  const SafetensorsFile b = load_safetensors(last_checkpoint("resumed").string());
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
    EXPECT_TRUE(all_close(a.tensors[i].second, b.tensors[i].second, 0, 0)) << a.tensors[i].first;
  }
  EXPECT_EQ(a.metadata.at("method"), "supervised");
  EXPECT_EQ(a.metadata.at("num_classes"), "3");
  EXPECT_EQ(a.metadata.at("step"), "5");
  EXPECT_EQ(a.at("encoder.fc.weight").shape(), (Shape{3, 64}));
  EXPECT_TRUE(a.contains("optimizer.momentum_buffer.encoder.fc.weight"));
  // Every step logged once, in order, despite the two resumes; one "final" validation entry, the
  // last invocation's (a resumed run drops the earlier ones).
  std::vector<int64_t> steps;
  int finals = 0;
  for (const nlohmann::json& line : MetricsLog::read((dir_->path() / "resumed" / "metrics.jsonl").string())) {
    if (line.at("kind") == "step") steps.push_back(line.at("step").get<int64_t>());
    if (line.at("kind") == "final") {
      ++finals;
      EXPECT_EQ(line.at("step").get<int64_t>(), 5);
      EXPECT_EQ(line.at("val_images").get<int64_t>(), 6);
      EXPECT_EQ(line.at("val_top1").get<double>(), resumed.val_top1);
    }
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(finals, 1);
  EXPECT_EQ(resumed.val_top1, straight.val_top1);
}

// On an easy dataset (colours under noise) the classifier learns in a few epochs: the epoch loss
// falls well below its start and the validation top-1 ends far above chance (33%). Deterministic on
// the CPU: the data, the initialisation and the CPU kernels' sums do not depend on the threads.
TEST_F(SupervisedTrainerTest, LearnsAnEasyDatasetInAFewEpochs) {
  const fs::path data = dir_->path() / "easy";
  write_colour_dataset(data, 3, 16, 6);
  PretrainConfig c = config("learns", 0);
  c.data = data.string();
  c.batch_size = 16;
  c.supervised.bn_groups = 1;
  c.epochs = 6;
  c.print_freq = 3;
  const PretrainResult r = pretrain(c);
  std::vector<double> epoch_loss;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string()))
    if (line.at("kind") == "epoch") epoch_loss.push_back(line.at("loss").get<double>());
  ASSERT_EQ(epoch_loss.size(), 6u);
  EXPECT_LT(epoch_loss.back(), 0.5 * epoch_loss.front()) << "epoch losses " << epoch_loss.front() << " ... "
                                                         << epoch_loss.back();
  EXPECT_GE(r.val_top1, 80.0) << "chance is 33%";
  EXPECT_EQ(r.val_top5, 100.0);  // 3 classes
}

TEST_F(SupervisedTrainerTest, SteadyStateStepsNeverReadFromTheDevice) {
  PretrainConfig c = config("reads", 0);
  c.epochs = 2;
  pretrain(c);
  int64_t steady = 0;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string())) {
    if (line.at("kind") != "step" || line.at("batch").get<int64_t>() == 0) continue;
    EXPECT_EQ(line.at("host_reads").get<int64_t>(), 0) << "step " << line.at("step");
    ++steady;
  }
  EXPECT_EQ(steady, 4);  // 2 epochs of 3 batches; the first of each epoch reads its shuffle
}

TEST_F(SupervisedTrainerTest, CudaSteadyStateStepsNeverReadFromTheDevice) {
  SKIP_WITHOUT_CUDA();
  PretrainConfig c = config("reads_cuda", 0);
  c.epochs = 2;
  c.device = Device::cuda();
  pretrain(c);
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string())) {
    if (line.at("kind") == "step" && line.at("batch").get<int64_t>() > 0) {
      EXPECT_EQ(line.at("host_reads").get<int64_t>(), 0) << "step " << line.at("step");
    }
  }
}

// A checkpoint of the classifier is read by evaluation as a pretraining one: load_backbone finds its
// ResNet (the features of the trained network, bit for bit), load_pretrained rebuilds the classifier
// (its logits), and kNN and the export run on it.
TEST_F(SupervisedTrainerTest, ItsCheckpointIsEvaluatedLikeAPretrainingOne) {
  Supervised trained(tiny_config(), 9, Device::cpu());
  nn::Sgd sgd(trained.online_encoder(), {0.9, 1e-4});
  for (int64_t step = 0; step < 2; ++step) {
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 1}, {4});
    const ContrastiveOutput out = trained.train_forward({{images(4, 10 + step)}, labels, Tensor()}, nullptr, step, nullptr);
    trained.online_encoder().zero_grad();
    out.loss.backward();
    sgd.step(0.1);
  }
  const fs::path path = dir_->path() / "trained_by_hand.safetensors";
  RunIdentity run;
  run.batch_size = 4;
  run.args_json = R"({"image_size": 16})";
  save_checkpoint(path.string(), trained, sgd, {0, 2, 2}, run);

  trained.online_encoder().eval();
  const Tensor x = images(3, 20);
  const Tensor features = trained.online_encoder().features(x), logits = trained.online_encoder().forward(x);
  BackboneSpec spec;
  spec.pretrained = path.string();
  const Backbone backbone = load_backbone(spec, Device::cpu());
  EXPECT_TRUE(all_close(backbone.net->features(x), features, 0, 0));
  EXPECT_EQ(backbone.image_size, 16);
  EXPECT_FALSE(backbone.trained_on_high_pass);
  EXPECT_NE(backbone.description.find("the supervised classifier after 2 steps"), std::string::npos)
      << backbone.description;
  const PretrainedRun loaded = load_pretrained(path.string(), Device::cpu());
  ASSERT_EQ(loaded.method->method(), Method::Supervised);
  loaded.method->online_encoder().eval();
  EXPECT_TRUE(all_close(loaded.method->online_encoder().forward(x), logits, 0, 0));

  const ExportedBackbone exported = export_backbone(path.string(), ExportFormat::Torchvision);
  EXPECT_NE(exported.source.find("encoder of a supervised checkpoint"), std::string::npos) << exported.source;

  // kNN on a checkpoint the trainer wrote.
  pretrain(config("evaluated", 3));
  spec.pretrained = last_checkpoint("evaluated").string();
  FeatureOptions fo;
  fo.batch_size = 8;
  fo.workers = 1;
  KnnOptions ko;
  ko.k = 4;
  const TopkCounts counts =
      knn_on_folders(*load_backbone(spec, Device::cpu()).net, (dir_->path() / "colours").string(), 16, fo, ko);
  EXPECT_EQ(counts.total, 6);
}

TEST_F(SupervisedTrainerTest, RefusesMaskingAnotherMethodsCheckpointAnotherClassCountAndOneClass) {
  PretrainConfig masked = config("masked", 1);
  masked.strategy = MaskStrategy::Hp;
  EXPECT_NE(error_of([&] { pretrain(masked); }).find("supervised: --strategy hp masks views for the contrastive"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(masked.save_dir));

  // A MoCo v2 run's folder is not continued as supervised, nor a supervised one as MoCo v2.
  PretrainConfig moco = config("moco_run", 1);
  moco.method = Method::MocoV2;
  moco.moco.arch = "resnet18";
  moco.moco.small_stem = true;
  moco.moco.width = 8;
  moco.moco.dim = 8;
  moco.moco.queue_size = 16;
  moco.moco.bn_groups = 2;
  pretrain(moco);
  PretrainConfig as_supervised = config("moco_run", 2);
  as_supervised.resume = "auto";
  std::string message = error_of([&] { pretrain(as_supervised); });
  EXPECT_NE(message.find("method: checkpoint mocov2, this run supervised"), std::string::npos) << message;
  EXPECT_NE(message.find("continues with `moco pretrain --method mocov2`"), std::string::npos) << message;
  pretrain(config("supervised_run", 1));
  PretrainConfig as_moco = moco;
  as_moco.save_dir = (dir_->path() / "supervised_run").string();
  as_moco.max_steps = 2;
  as_moco.resume = "auto";
  message = error_of([&] { pretrain(as_moco); });
  EXPECT_NE(message.find("method: checkpoint supervised, this run mocov2"), std::string::npos) << message;
  EXPECT_NE(message.find("continues with `moco supervised`"), std::string::npos) << message;

  // The classifier's outputs are the training folder's classes: a folder of 4 does not continue a run of 3.
  write_colour_dataset(dir_->path() / "four", 4, 2, 1);
  PretrainConfig four = config("supervised_run", 2);
  four.data = (dir_->path() / "four").string();
  four.resume = "auto";
  message = error_of([&] { pretrain(four); });
  EXPECT_NE(message.find("num_classes: checkpoint 3, this run 4"), std::string::npos) << message;

  // One class is no classification; a val/ of other classes would compare other labels.
  write_colour_dataset(dir_->path() / "one", 1, 8, 1);
  PretrainConfig one = config("one_class", 1);
  one.data = (dir_->path() / "one").string();
  message = error_of([&] { pretrain(one); });
  EXPECT_NE(message.find("holds one class ('class0'); a classifier needs at least 2"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(one.save_dir));
  fs::rename(dir_->path() / "four" / "val" / "class3", dir_->path() / "four" / "val" / "other");
  PretrainConfig other_val = config("other_val", 1);
  other_val.data = (dir_->path() / "four").string();
  message = error_of([&] { pretrain(other_val); });
  EXPECT_NE(message.find("class 3 is 'other' there and 'class3' here"), std::string::npos) << message;
}

}  // namespace
}  // namespace engine::ssl
