// test_distributed_eval.cpp - the oracle of distributed evaluation: W ranks that share the images
// compute what one process computes. The feature matrix and the kNN counts are the one process's
// exactly; a linear probe on W ranks of b images takes the steps of one process with -b W b, fresh,
// with --cached-features, and resumed on the ranks.
//
// The data: 21 training and 9 validation images with b = 2 per rank, so the last global batch (of
// 2 W) is short whatever W is: with W = 2 rank 1 has no image in the last training batch and one
// image fewer in the feature shards, which exercises the padding of the gather and a rank that
// joins a gradient average without images.
//
// Tolerance. The features are exact: a rank's batches of b images are the very batches of b images
// the one process reads (the loader deals each global batch of W b in slices of b), and the gather
// only copies rows. The probe's W ranks differ from the one process only in the order of sums: each
// rank sums the gradients of its b images, the average adds the W partial sums (and the short
// batch's weight n W / n_global adds one rounding), where the one process sums W b images in one
// loop. In f32 over 3 epochs of 11 steps that leaves each tensor of fc and its momentum within
// 5e-7 of its largest value (measured on two ranks: 1e-7 to 5e-7); 1e-5 of the largest value is
// 20 times that, and far below a real difference:
// the short batch left unweighted moves the weights by 7% and the momentum by 96% of their largest
// values. The accuracies are counts of the same predictions: equal unless two logits of a
// validation image tie within ~1e-6, which these images do not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/augment.h"
#include "data/image_folder.h"
#include "engine/metrics_log.h"
#include "engine/serialize.h"
#include "ssl/eval/backbone.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/eval/lincls.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/distributed/distributed_env.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;
using engine::testing::TempDir;
using engine::testing::all_close;
using engine::testing::world;

constexpr int64_t kPerRank = 2;  // images per rank and batch
constexpr double kRelativeTolerance = 1e-5;

double max_abs(const Tensor& a) {
  const std::vector<double> x = a.to(DType::f64).to_vector<double>();
  double worst = 0;
  for (double v : x) worst = std::max(worst, std::abs(v));
  return worst;
}

class DistributedEvaluationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("distributed_eval");
    root_ = broadcast_text(world(), dir_->path().string());
    testing::write_synth_on_rank_zero(data_root(), 3, 7, 3);  // 21 train: no global batch of 2 W divides it
  }
  static void TearDownTestSuite() {
    world().barrier();
    delete dir_;  // rank 0's folder is the one every rank used
    dir_ = nullptr;
  }

  static std::string data_root() { return (fs::path(root_) / "synth").string(); }

  static BackboneSpec random_resnet18() {
    BackboneSpec spec;
    spec.pretrained = kRandomBackbone;
    spec.random_config.arch = "resnet18";
    spec.random_config.stem = nn::ResNetStem::SmallImage;
    spec.random_config.width = 8;
    spec.random_seed = 3;
    return spec;
  }

  // A backbone whose BatchNorm statistics differ between the ranks unless rank 0's are broadcast:
  // rank 0 keeps the initial ones (the one process's), the others' variances are 4.
  static Backbone backbone_with_rank_statistics() {
    Backbone b = load_backbone(random_resnet18(), Device::cpu());
    if (!world().is_root())
      for (auto& [name, buffer] : b.net->named_buffers())
        if (name.find("running_var") != std::string::npos) buffer.fill_(4.0);
    return b;
  }

  static FeatureOptions feature_options(bool distributed) {
    FeatureOptions fo;
    fo.batch_size = kPerRank;
    fo.workers = 1;
    fo.seed = 7;
    fo.world = distributed ? &world() : nullptr;
    return fo;
  }

  static LinclsConfig lincls_config(const std::string& run, bool distributed, bool cached) {
    LinclsConfig c;
    c.data = data_root();
    c.save_dir = (fs::path(root_) / run).string();
    c.backbone = random_resnet18();
    c.lr = 5e-4;  // an untrained network's eval-mode features are large: lr 30 would overshoot
    c.epochs = 3;
    c.schedule = {2};
    c.batch_size = kPerRank * world().world_size();  // the global batch, the same for the one process
    c.image_size = 16;
    c.cached_features = cached;
    c.workers = 1;
    c.seed = 4;
    c.print_freq = 100;
    c.args_json = "{}";
    c.world = distributed ? &world() : nullptr;
    return c;
  }

  static std::vector<nlohmann::json> epoch_lines(const std::string& run) {
    std::vector<nlohmann::json> out;
    for (const auto& entry : MetricsLog::read((fs::path(root_) / run / "metrics.jsonl").string()))
      if (entry.at("kind") == "epoch") out.push_back(entry);
    return out;
  }

  static NamedTensors last_state(const std::string& run) {
    return load_safetensors((fs::path(root_) / run / "checkpoints" / "last.safetensors").string()).tensors;
  }

  // Rank 0's: the ranks' run and the one process's end with the same classifier, momentum and
  // accuracies.
  static void expect_same_probe(const std::string& single_run, const LinclsResult& single,
                                const std::string& ranks_run, const LinclsResult& ranks) {
    const NamedTensors a = last_state(single_run), b = last_state(ranks_run);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(all_close(b[i].second, a[i].second, kRelativeTolerance * max_abs(a[i].second), 0)) << a[i].first;
    }
    // The logged epochs: the training meters are every rank's images, the accuracies all of val/.
    const std::vector<nlohmann::json> x = epoch_lines(single_run), y = epoch_lines(ranks_run);
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(x[i].at("train_loss").get<double>(), y[i].at("train_loss").get<double>(), kRelativeTolerance)
          << "epoch " << i;
      for (const char* key : {"train_top1", "val_top1", "val_top5"})
        EXPECT_EQ(x[i].at(key).get<double>(), y[i].at(key).get<double>()) << key << ", epoch " << i;
    }
    EXPECT_EQ(ranks.epochs_done, single.epochs_done);
    EXPECT_EQ(ranks.last_top1, single.last_top1);
    EXPECT_EQ(ranks.last_top5, single.last_top5);
    EXPECT_EQ(ranks.best_top1, single.best_top1);
    EXPECT_EQ(ranks.best_epoch, single.best_epoch);
  }

  // Every rank returned rank 0's result.
  static void expect_result_on_every_rank(const LinclsResult& r) {
    const std::vector<double> mine = {r.last_top1, r.last_top5, r.best_top1, static_cast<double>(r.best_epoch)};
    Tensor root = Tensor::from_vector(mine, {4});
    world().broadcast(root, 0);
    EXPECT_EQ(root.to_vector<double>(), mine) << "rank " << world().rank();
  }

  static TempDir* dir_;
  static std::string root_;
};

TempDir* DistributedEvaluationTest::dir_ = nullptr;
std::string DistributedEvaluationTest::root_;

TEST_F(DistributedEvaluationTest, RanksExtractTheOneProcessFeaturesWithRankZerosStatistics) {
  auto train = std::make_shared<data::ImageFolder>((fs::path(data_root()) / "train").string());
  const data::AugmentConfig transform = data::eval_transform(16);
  Backbone b = backbone_with_rank_statistics();
  const FeatureSet ranks = extract_features(*b.net, train, transform, feature_options(true));
  const FeatureSet shard = extract_shard_features(*b.net, train, transform, feature_options(true));
  const Backbone single_net = load_backbone(random_resnet18(), Device::cpu());
  const FeatureSet single = extract_features(*single_net.net, train, transform, feature_options(false));

  ASSERT_EQ(single.features.size(0), 21);
  EXPECT_EQ(ranks.classes, 3);
  EXPECT_EQ(ranks.labels.to_vector<int64_t>(), single.labels.to_vector<int64_t>());
  EXPECT_TRUE(all_close(ranks.features, single.features, 0, 0)) << "rank " << world().rank();

  // The shards are the loader's: rank r's rows are the r-th pair of each global batch, and together
  // they are every image once.
  Tensor images = Tensor::from_vector(std::vector<int64_t>{shard.features.size(0)}, {1});
  world().all_reduce(images, Reduction::Sum);
  EXPECT_EQ(images.to_vector<int64_t>()[0], 21);
  const int64_t W = world().world_size(), r = world().rank();
  int64_t row = 0;
  for (int64_t start = 0; start < 21; start += kPerRank * W) {
    const int64_t from = std::min<int64_t>(21, start + r * kPerRank), to = std::min<int64_t>(21, from + kPerRank);
    for (int64_t i = from; i < to; ++i, ++row)
      EXPECT_TRUE(all_close(shard.features.slice(0, row, row + 1), single.features.slice(0, i, i + 1), 0, 0))
          << "rank " << r << " row " << row << " image " << i;
  }
  EXPECT_EQ(row, shard.features.size(0));
}

TEST_F(DistributedEvaluationTest, KnnOnRanksCountsEveryQueryAsOneProcess) {
  Backbone b = backbone_with_rank_statistics();
  KnnOptions ko;
  ko.k = 5;
  const TopkCounts ranks = knn_on_folders(*b.net, data_root(), 16, feature_options(true), ko);
  const Backbone single_net = load_backbone(random_resnet18(), Device::cpu());
  const TopkCounts single = knn_on_folders(*single_net.net, data_root(), 16, feature_options(false), ko);
  EXPECT_EQ(ranks.total, 9);
  EXPECT_EQ(ranks.correct1, single.correct1);
  EXPECT_EQ(ranks.correct5, single.correct5);
}

TEST_F(DistributedEvaluationTest, LinearProbeOnRanksTakesTheOneProcessSteps) {
  for (const bool cached : {false, true}) {
    SCOPED_TRACE(cached ? "cached features" : "augmented images");
    const std::string name = cached ? "cached" : "images";
    const LinclsResult ranks = linear_classification(lincls_config(name + "_ranks", true, cached));
    expect_result_on_every_rank(ranks);
    if (world().is_root()) {
      const LinclsResult single = linear_classification(lincls_config(name + "_single", false, cached));
      expect_same_probe(name + "_single", single, name + "_ranks", ranks);
    }
    world().barrier();
  }
}

TEST_F(DistributedEvaluationTest, LinearProbeResumedOnRanksEndsAsOneProcess) {
  // Two epochs on the ranks, then every rank reads the checkpoint and they train the third.
  LinclsConfig part = lincls_config("resumed", true, false);
  part.epochs = 2;
  linear_classification(part);
  LinclsConfig rest = lincls_config("resumed", true, false);
  rest.resume = "auto";
  const LinclsResult resumed = linear_classification(rest);
  expect_result_on_every_rank(resumed);
  if (world().is_root()) {
    const LinclsResult single = linear_classification(lincls_config("whole_single", false, false));
    expect_same_probe("whole_single", single, "resumed", resumed);
  }
  world().barrier();
}

TEST_F(DistributedEvaluationTest, AGlobalBatchThatDoesNotDivideIsRefusedOnEveryRank) {
  if (world().world_size() == 1) GTEST_SKIP() << "needs more than one rank";
  LinclsConfig c = lincls_config("odd", true, false);
  c.batch_size = kPerRank * world().world_size() + 1;
  const std::string error = engine::testing::error_of([&] { linear_classification(c); });
  EXPECT_NE(error.find("is the global batch"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(fs::path(root_) / "odd"));
  world().barrier();
}

}  // namespace
}  // namespace engine::ssl
