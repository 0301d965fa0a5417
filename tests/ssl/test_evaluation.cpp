// test_evaluation.cpp - the evaluation protocols: the weighted kNN against hand-computed votes,
// top-k counting with ties, backbones from a checkpoint or random, and the linear probe on a tiny
// dataset whose classes are linearly separable in pixel space (solid-ish colours): it must reach
// ~100%, leave the backbone bit-identical, and resume bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/codec.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/metrics_log.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/optimizer.h"
#include "ssl/methods/moco.h"
#include "ssl/run/checkpoint.h"
#include "ssl/eval/knn.h"
#include "ssl/eval/lincls.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::TempDir;

Tensor rows(const std::vector<float>& values, int64_t cols) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size()) / cols, cols});
}

TEST(Knn, VotesAreTheWeightedSumsOfTheKNearestNeighbours) {
  // Unit rows in 2-D. Query (1, 0): similarities 1, 0, 0.6, 0.8 -> the 3 nearest are rows 0, 3, 2.
  const Tensor bank = rows({1, 0, 0, 1, 0.6f, 0.8f, 0.8f, 0.6f}, 2);
  const Tensor labels = Tensor::from_vector<int64_t>({0, 1, 1, 0}, {4});
  const Tensor queries = rows({1, 0, 0, 1}, 2);
  KnnOptions o;
  o.k = 3;
  o.temperature = 0.5;
  const std::vector<double> s = knn_class_scores(bank, labels, queries, 3, o).to_vector<double>();
  const double f06 = static_cast<double>(0.6f), f08 = static_cast<double>(0.8f);  // the f32 similarities
  EXPECT_NEAR(s[0], std::exp(1 / 0.5) + std::exp(f08 / 0.5), 1e-12);  // class 0: rows 0 and 3
  EXPECT_NEAR(s[1], std::exp(f06 / 0.5), 1e-12);                      // class 1: row 2
  EXPECT_EQ(s[2], 0.0);                                               // no neighbour of class 2
  EXPECT_NEAR(s[3], std::exp(f06 / 0.5), 1e-12);                      // query (0, 1): row 3 for class 0
  EXPECT_NEAR(s[4], std::exp(1 / 0.5) + std::exp(f08 / 0.5), 1e-12);  // rows 1 and 2 for class 1
  // k beyond the bank takes every row.
  o.k = 50;
  const std::vector<double> all = knn_class_scores(bank, labels, queries, 2, o).to_vector<double>();
  EXPECT_NEAR(all[0], std::exp(2.0) + std::exp(f08 / 0.5), 1e-12);
  EXPECT_NEAR(all[1], std::exp(0.0) + std::exp(f06 / 0.5), 1e-12);
}

TEST(Knn, EqualSimilaritiesPreferTheLowerRowAndChunksDoNotMatter) {
  const Tensor bank = rows({0, 1, 0, 1, 1, 0}, 2);  // rows 0 and 1 identical, labels 1 and 0
  const Tensor labels = Tensor::from_vector<int64_t>({1, 0, 0}, {3});
  KnnOptions o;
  o.k = 1;
  const std::vector<double> s = knn_class_scores(bank, labels, rows({0, 1}, 2), 2, o).to_vector<double>();
  EXPECT_EQ(s[0], 0.0);
  EXPECT_GT(s[1], 0.0);  // row 0 (label 1) wins the tie
  Generator gen(3);
  Tensor many = Tensor::empty({37, 2});
  normal_(many, gen);
  o.k = 2;
  o.chunk = 256;
  const Tensor whole = knn_class_scores(bank, labels, many, 2, o);
  o.chunk = 5;
  EXPECT_EQ(whole.to_vector<double>(), knn_class_scores(bank, labels, many, 2, o).to_vector<double>());
}

TEST(Knn, EvaluateNormalisesTheFeaturesAndCountsTopK) {
  FeatureSet bank{rows({3, 0, 0, 2}, 2), Tensor::from_vector<int64_t>({0, 1}, {2}), 2};
  FeatureSet queries{rows({5, 1, 1, 4, 0.1f, 9}, 2), Tensor::from_vector<int64_t>({0, 1, 0}, {3}), 2};
  KnnOptions o;
  o.k = 1;
  const TopkCounts c = knn_evaluate(bank, queries, o);
  EXPECT_EQ(c.total, 3);
  EXPECT_EQ(c.correct1, 2);  // the third query is nearest to the class-1 row
  EXPECT_EQ(c.correct5, 3);
  EXPECT_NEAR(c.top1(), 200.0 / 3, 1e-12);
}

TEST(Knn, RefusesBadInput) {
  const Tensor bank = rows({1, 0}, 2);
  KnnOptions o;
  EXPECT_THROW(knn_class_scores(bank, Tensor::from_vector<int64_t>({4}, {1}), rows({1, 0}, 2), 2, o), Error);
  EXPECT_THROW(knn_class_scores(bank, Tensor::from_vector<int64_t>({0}, {1}), rows({1, 0, 0}, 3), 2, o), Error);
  o.temperature = 0;
  EXPECT_THROW(knn_class_scores(bank, Tensor::from_vector<int64_t>({0}, {1}), rows({1, 0}, 2), 2, o), Error);
}

TEST(TopkCounts, TiesCountAgainstTheLabel) {
  // Row 0: label 1 ties class 0 (lower index, ranked first) -> not top-1. Row 1: label 0 wins the tie.
  const Tensor scores = rows({2, 2, 1, 5, 5, 5}, 3);
  const TopkCounts c = topk_counts(scores, Tensor::from_vector<int64_t>({1, 0}, {2}));
  EXPECT_EQ(c.correct1, 1);
  EXPECT_EQ(c.correct5, 2);
  const Tensor seven = rows({7, 6, 5, 4, 3, 2, 1}, 7);
  EXPECT_EQ(topk_counts(seven, Tensor::from_vector<int64_t>({4}, {1})).correct5, 1);  // rank 4
  EXPECT_EQ(topk_counts(seven, Tensor::from_vector<int64_t>({5}, {1})).correct5, 0);  // rank 5
}

// Three classes of 16 x 16 PNGs: red, green and blue with noise, linearly separable by the channel
// means.
class EvaluationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("evaluation");
    Generator gen(11);
    const char* names[3] = {"blue", "green", "red"};  // sorted, so class c is channel 2 - c
    for (const char* split : {"train", "val"}) {
      const int count = std::string(split) == "train" ? 12 : 6;
      for (int c = 0; c < 3; ++c) {
        const fs::path folder = dir_->path() / "colours" / split / names[c];
        fs::create_directories(folder);
        for (int i = 0; i < count; ++i) {
          data::Image image(16, 16, 3);
          Tensor noise = Tensor::empty({16 * 16 * 3});
          uniform_(noise, gen, 40, 80);
          const std::vector<float> v = noise.to_vector<float>();
          for (size_t p = 0; p < image.pixels.size(); ++p)
            image.pixels[p] = static_cast<uint8_t>(v[p] + (static_cast<int>(p % 3) == 2 - c ? 150 : 0));
          const std::vector<uint8_t> png = data::encode_png(image);
          std::ofstream((folder / (std::to_string(i) + ".png")).string(), std::ios::binary)
              .write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
        }
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static LinclsConfig config(const std::string& run, const std::string& pretrained) {
    LinclsConfig c;
    c.data = (dir_->path() / "colours").string();
    c.save_dir = (dir_->path() / run).string();
    c.backbone.pretrained = pretrained;
    c.backbone.random_config.arch = "resnet18";
    c.backbone.random_config.stem = nn::ResNetStem::SmallImage;
    c.backbone.random_config.width = 8;
    c.lr = 0.02;  // an untrained network's eval-mode features are large: lr 30 would overshoot
    c.epochs = 8;
    c.schedule = {6};
    c.batch_size = 9;
    c.image_size = 16;
    c.workers = 2;
    c.seed = 4;
    c.args_json = "{}";
    return c;
  }

  // A pretraining checkpoint of a MoCo made with hp at 16 pixels. Its encoders are untrained but
  // their BatchNorm statistics are those of noise images, so that eval-mode features have a
  // trained network's scale (an untrained network's are far larger, and a probe on them needs a
  // much smaller learning rate).
  static std::string hp_checkpoint() {
    const fs::path path = dir_->path() / "hp_checkpoint.safetensors";
    if (!fs::exists(path)) {
      MocoConfig mc;
      mc.arch = "resnet18";
      mc.small_stem = true;
      mc.width = 8;
      mc.dim = 8;
      mc.queue_size = 16;
      MoCo moco(mc, 9, Device::cpu());
      {
        NoGradGuard no_grad;
        Generator gen(2);
        for (int i = 0; i < 40; ++i) {
          Tensor images = Tensor::empty({8, 3, 16, 16});
          normal_(images, gen);
          moco.encoder_q().features(images);  // train mode: the running statistics follow the batches
        }
      }
      nn::Sgd sgd(moco.encoder_q(), {});
      save_checkpoint(path.string(), moco, sgd, {1, 0, 2}, {8, 9, R"({"image_size": 16})", MaskStrategy::Hp});
    }
    return path.string();
  }

  static TempDir* dir_;
};

TempDir* EvaluationTest::dir_ = nullptr;

TEST_F(EvaluationTest, RandomBackboneIsFrozenAndDescribed) {
  BackboneSpec spec = config("unused", kRandomBackbone).backbone;
  const Backbone b = load_backbone(spec, Device::cpu());
  EXPECT_FALSE(b.net->is_training());
  EXPECT_EQ(b.net->feature_dim(), 64);  // width 8: layer4 has 8 x 8 channels
  EXPECT_FALSE(b.trained_on_high_pass);
  EXPECT_EQ(evaluation_image_size(0, b), 224);
  EXPECT_FALSE(evaluation_high_pass(HighPass::Auto, b));
  EXPECT_TRUE(evaluation_high_pass(HighPass::On, b));
  EXPECT_NE(b.description.find("random init (resnet18, small stem, width 8"), std::string::npos);
  spec.pretrained = (dir_->path() / "absent.safetensors").string();
  EXPECT_THROW(load_backbone(spec, Device::cpu()), Error);
}

TEST_F(EvaluationTest, CheckpointBackboneBringsItsStrategyAndImageSize) {
  BackboneSpec spec;
  spec.pretrained = hp_checkpoint();
  const Backbone b = load_backbone(spec, Device::cpu());
  EXPECT_TRUE(b.trained_on_high_pass);
  EXPECT_EQ(b.image_size, 16);
  EXPECT_EQ(evaluation_image_size(0, b), 16);
  EXPECT_EQ(evaluation_image_size(32, b), 32);
  EXPECT_TRUE(evaluation_high_pass(HighPass::Auto, b));
  EXPECT_FALSE(evaluation_high_pass(HighPass::Off, b));
  EXPECT_EQ(b.net->config().width, 8);
  // The backbone is encoder_q's: equal to the checkpoint's tensors.
  const SafetensorsFile file = load_safetensors(spec.pretrained);
  for (const auto& [name, t] : b.net->state_dict()) {
    if (name.rfind("fc.", 0) == 0) continue;
    if (t.dtype() == DType::f32) {
      EXPECT_EQ(t.to_vector<float>(), file.at("encoder_q." + name).to(DType::f32).to_vector<float>()) << name;
    }
  }
}

// A checkpoint is trusted for nothing its tensors do not show: metadata that describes a larger
// model than the file holds, args that are not the run's flags, or another program's format are
// refused before any model is built, with what was wrong.
TEST_F(EvaluationTest, ACheckpointWhoseMetadataLiesIsRefusedBeforeItsModelIsBuilt) {
  const SafetensorsFile good = load_safetensors(hp_checkpoint());
  const auto with = [&](const std::string& key, const std::string& value) {
    Metadata m = good.metadata;
    m[key] = value;
    const std::string path = (dir_->path() / ("lying_" + key + ".safetensors")).string();
    save_safetensors(path, good.tensors, m);
    return path;
  };
  const auto refusal = [](const std::string& path) {
    return error_of([&] { load_pretrained(path, Device::cpu()); });
  };
  // Width 4096 would be about 800 GB of encoders; moco_k 2^24 a 512 MB queue; both from 300 KB.
  EXPECT_NE(refusal(with("width", "4096")).find("tensor 'encoder_q.conv1.weight' is (8, 3, 3, 3) but a ResNet of "
                                                  "width 4096 needs (4096, 3, 3, 3)"),
            std::string::npos);
  EXPECT_NE(refusal(with("moco_k", "16777216")).find("tensor 'queue' is (8, 16) but the checkpoint's model (resnet18 "
                                                      "of width 8, moco_dim 8, moco_k 16777216) needs (8, 16777216)"),
            std::string::npos);
  EXPECT_NE(refusal(with("moco_dim", "1000000")).find("tensor 'encoder_q.fc.weight' is (8, 64)"), std::string::npos);
  EXPECT_NE(refusal(with("args", "{\"bn_groups\": 0}")).find("bn_groups = 0, expected a count from 1"),
            std::string::npos);
  EXPECT_NE(refusal(with("args", "not json")).find("'args' is not a JSON object"), std::string::npos);
  EXPECT_NE(refusal(with("bn_groups_total", "4194304")).find("bn_groups_total 4194304 is not a count"),
            std::string::npos);
  EXPECT_NE(refusal(with("format", "simclr-pretrain-checkpoint/1")).find("not a `moco pretrain` checkpoint"),
            std::string::npos);
  BackboneSpec spec;
  spec.pretrained = with("args", "[1, 2]");
  EXPECT_NE(error_of([&] { load_backbone(spec, Device::cpu()); }).find("'args' is not a JSON object"),
            std::string::npos);
}

TEST_F(EvaluationTest, FrozenStateCheckSeesAChangedBit) {
  const Backbone b = load_backbone(config("unused", kRandomBackbone).backbone, Device::cpu());
  const FrozenStateCheck check(*b.net);
  EXPECT_TRUE(check.changed(*b.net).empty());
  Tensor v = b.net->named_buffers().front().second;  // bn1.running_mean
  v.data<float>()[0] = std::nextafter(v.data<float>()[0], 1.0f);
  const std::vector<std::string> changed = check.changed(*b.net);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0], "bn1.running_mean");
}

TEST_F(EvaluationTest, LinearProbeSeparatesColoursAndLeavesTheBackboneBitIdentical) {
  LinclsConfig c = config("probe", hp_checkpoint());
  c.high_pass = HighPass::Off;  // a high-pass would remove the colour means the classes differ by
  c.lr = 0.1;
  const LinclsResult r = linear_classification(c);
  EXPECT_EQ(r.best_top1, 100.0);
  EXPECT_EQ(r.last_top1, 100.0);
  EXPECT_EQ(r.epochs_done, 8);
  EXPECT_FALSE(r.high_pass);
  EXPECT_EQ(r.image_size, 16);
  // Parameters and BatchNorm statistics after training, bit for bit the checkpoint's encoder_q.
  const SafetensorsFile file = load_safetensors(c.backbone.pretrained);
  ASSERT_FALSE(r.backbone_state.empty());
  for (const auto& [name, t] : r.backbone_state) {
    if (name.rfind("fc.", 0) == 0) continue;
    const Tensor& saved = file.at("encoder_q." + name);
    ASSERT_EQ(t.dtype(), saved.dtype()) << name;
    if (t.dtype() == DType::f32)
      EXPECT_EQ(t.to_vector<float>(), saved.to_vector<float>()) << name;
    else
      EXPECT_EQ(t.to_vector<int64_t>(), saved.to_vector<int64_t>()) << name;
  }
  // metrics.jsonl: one line per epoch and the final one; result.json holds the final one.
  const auto lines = MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_EQ(lines.back().at("kind"), "final");
  EXPECT_DOUBLE_EQ(lines.back().at("best_top1").get<double>(), r.best_top1);
  EXPECT_TRUE(fs::exists(fs::path(c.save_dir) / "result.json"));
  EXPECT_TRUE(fs::exists(fs::path(c.save_dir) / "checkpoints" / "best.safetensors"));
  // A second run into the same folder is refused before it writes anything.
  c.args_json = R"({"second": true})";
  EXPECT_THROW(linear_classification(c), Error);
  std::ifstream args((fs::path(c.save_dir) / "args.json").string());
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(args), {}), "{}\n");
}

TEST_F(EvaluationTest, CachedFeaturesReachTheSameAndResumeBitForBit) {
  LinclsConfig whole = config("cached_whole", kRandomBackbone);
  whole.cached_features = true;
  const LinclsResult r = linear_classification(whole);
  EXPECT_GE(r.best_top1, 94.0);

  // 3 epochs, then a resumed run to 8: the step schedule does not depend on --epochs, so the
  // two pieces train exactly as the whole.
  LinclsConfig part = config("cached_resumed", kRandomBackbone);
  part.cached_features = true;
  part.epochs = 3;
  linear_classification(part);
  LinclsConfig rest = part;
  rest.epochs = 8;
  rest.resume = "auto";
  const LinclsResult resumed = linear_classification(rest);
  EXPECT_EQ(resumed.last_top1, r.last_top1);
  EXPECT_EQ(resumed.best_top1, r.best_top1);
  const SafetensorsFile a = load_safetensors((fs::path(whole.save_dir) / "checkpoints" / "last.safetensors").string());
  const SafetensorsFile b = load_safetensors((fs::path(rest.save_dir) / "checkpoints" / "last.safetensors").string());
  EXPECT_EQ(a.at("fc.weight").to_vector<float>(), b.at("fc.weight").to_vector<float>());
  EXPECT_EQ(a.at("fc.bias").to_vector<float>(), b.at("fc.bias").to_vector<float>());
  EXPECT_EQ(MetricsLog::read((fs::path(rest.save_dir) / "metrics.jsonl").string()).size(), 9u);
  // Resuming a finished run trains nothing and reports what the run reached.
  const LinclsResult again = linear_classification(rest);
  EXPECT_EQ(again.epochs_done, 8);
  EXPECT_EQ(again.last_top1, r.last_top1);
  EXPECT_EQ(again.best_top1, r.best_top1);
  // Another protocol (the full one instead of cached features) is refused.
  LinclsConfig other = rest;
  other.cached_features = false;
  EXPECT_THROW(linear_classification(other), Error);
}

TEST_F(EvaluationTest, RefusesBadFlagsAndDataWithClearErrors) {
  LinclsConfig c = config("bad", kRandomBackbone);
  c.num_classes = 2;  // fewer than the data's 3
  EXPECT_THROW(linear_classification(c), Error);
  c = config("bad2", kRandomBackbone);
  c.data = (dir_->path() / "colours" / "train").string();  // no train/ and val/ below
  EXPECT_THROW(linear_classification(c), Error);
  const Backbone b = load_backbone(c.backbone, Device::cpu());
  FeatureOptions fo;
  EXPECT_THROW(knn_on_folders(*b.net, (dir_->path() / "colours" / "train").string(), 16, fo, {}), Error);
}

TEST_F(EvaluationTest, KnnOnFoldersFindsTheColours) {
  const Backbone b = load_backbone(config("unused", kRandomBackbone).backbone, Device::cpu());
  FeatureOptions fo;
  fo.batch_size = 7;
  fo.workers = 2;
  KnnOptions o;
  o.k = 5;
  const TopkCounts c = knn_on_folders(*b.net, (dir_->path() / "colours").string(), 16, fo, o);
  EXPECT_EQ(c.total, 18);
  EXPECT_GE(c.top1(), 94.0);
}

}  // namespace
}  // namespace engine::ssl
