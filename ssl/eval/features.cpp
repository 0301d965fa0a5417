// features.cpp - see features.h.
#include "ssl/eval/features.h"

#include <algorithm>
#include <vector>

#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "layers/data_parallel.h"
#include "ops/gaussian_filter.h"
#include "ops/index_select.h"

namespace engine::ssl {

namespace {

// A rank's share of the features, and where each row belongs in the dataset.
struct Shard {
  FeatureSet set;                  // (n, F) features and (n) labels, n = positions.size()
  std::vector<int64_t> positions;  // row i is the sampler's dataset sample positions[i]
};

Collectives& world_of(const FeatureOptions& options) {
  return options.world ? *options.world : local_collectives();
}

Shard extract_shard(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                    const data::AugmentConfig& transform, const FeatureOptions& options) {
  ENGINE_CHECK(!backbone.is_training(), "extract_features: the backbone must be in eval mode (frozen statistics)");
  Collectives& world = world_of(options);
  nn::broadcast_buffers(backbone, world);  // eval mode normalises with rank 0's statistics on every rank
  data::LoaderOptions lo;
  lo.batch_size = static_cast<int>(options.batch_size);
  lo.workers = options.workers;
  lo.views = 1;
  lo.shuffle = false;
  lo.drop_last = false;  // every image is extracted, the short last batch included
  lo.seed = options.seed;
  lo.rank = world.rank();
  lo.world_size = world.world_size();
  lo.device = options.device;
  Shard shard;
  FeatureSet& out = shard.set;
  out.classes = static_cast<int64_t>(dataset->classes().size());
  data::Loader loader(std::move(dataset), transform, lo);
  shard.positions = loader.epoch_order(options.epoch);
  const int64_t n = static_cast<int64_t>(shard.positions.size());
  out.features = Tensor::empty({n, backbone.feature_dim()}, DType::f32, options.device);
  out.labels = Tensor::empty({n}, DType::i64);
  loader.start_epoch(options.epoch);
  NoGradGuard no_grad;
  int64_t row = 0;
  while (auto batch = loader.next()) {
    const int64_t b = batch->size();
    const Tensor features = backbone.features(backbone_input(batch->views[0], options.high_pass));  // (b, F)
    out.features.slice(0, row, row + b).copy_(features);
    out.labels.slice(0, row, row + b).copy_(batch->labels);
    row += b;
  }
  ENGINE_CHECK(row == n, "extract_features: the loader delivered {} images of this rank's {}", row, n);
  return shard;
}

// Every rank's shard on every rank, each row at its dataset position: (N, F) features and (N) labels.
FeatureSet gather_shards(const Shard& mine, int64_t N, Collectives& world) {
  const Tensor& features = mine.set.features;  // (n, F)
  const int64_t n = features.size(0), F = features.size(1);
  // all_gather takes one shape on every rank: the row counts first, then the shards padded to the
  // largest (rank 0's, which the loader deals first).
  const std::vector<int64_t> counts =
      world.all_gather(Tensor::from_vector(std::vector<int64_t>{n}, {1})).to_vector<int64_t>();  // (W)
  const int64_t rows = *std::max_element(counts.begin(), counts.end());
  Tensor padded = Tensor::zeros({rows, F}, DType::f32, features.device());  // (rows, F)
  if (n > 0) padded.slice(0, 0, n).copy_(features);
  // Per row: its dataset position and its label (the label of an undecodable file's replacement).
  std::vector<int64_t> meta(static_cast<size_t>(rows * 2), -1);
  const std::vector<int64_t> labels = mine.set.labels.to_vector<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    meta[static_cast<size_t>(2 * i)] = mine.positions[static_cast<size_t>(i)];
    meta[static_cast<size_t>(2 * i + 1)] = labels[static_cast<size_t>(i)];
  }
  const Tensor all_features = world.all_gather(padded);  // (W rows, F)
  const std::vector<int64_t> all_meta =
      world.all_gather(Tensor::from_vector(meta, {rows, 2})).to_vector<int64_t>();  // (W rows, 2)
  // For each dataset position, the gathered row that holds it.
  std::vector<int64_t> source(static_cast<size_t>(N), -1), all_labels(static_cast<size_t>(N), -1);
  for (int64_t r = 0; r < static_cast<int64_t>(counts.size()); ++r) {
    for (int64_t i = 0; i < counts[static_cast<size_t>(r)]; ++i) {
      const int64_t row = r * rows + i, position = all_meta[static_cast<size_t>(2 * row)];
      ENGINE_CHECK(position >= 0 && position < N && source[static_cast<size_t>(position)] < 0,
                   "extract_features: rank {} sent dataset position {}, expected an unclaimed one in [0, {}); the "
                   "ranks disagree on the dataset: give every rank the same data",
                   r, position, N);
      source[static_cast<size_t>(position)] = row;
      all_labels[static_cast<size_t>(position)] = all_meta[static_cast<size_t>(2 * row + 1)];
    }
  }
  const int64_t missing = std::count(source.begin(), source.end(), int64_t{-1});
  ENGINE_CHECK(missing == 0, "extract_features: the ranks delivered {} of the {} images; the ranks disagree on the "
               "dataset: give every rank the same data", N - missing, N);
  FeatureSet out;
  out.classes = mine.set.classes;
  out.features = index_select(all_features, Tensor::from_vector(source, {N}));  // (N, F)
  out.labels = Tensor::from_vector(all_labels, {N});
  return out;
}

}  // namespace

Tensor backbone_input(const Tensor& x, bool high_pass_inputs) {
  if (!high_pass_inputs) return x;
  NoGradGuard no_grad;
  return high_pass(x);  // METHOD.md 3.1: kernel 11, sigma 5, as the pretraining's encoder inputs
}

FeatureSet extract_shard_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                                  const data::AugmentConfig& transform, const FeatureOptions& options) {
  return extract_shard(backbone, std::move(dataset), transform, options).set;
}

FeatureSet extract_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                            const data::AugmentConfig& transform, const FeatureOptions& options) {
  Collectives& world = world_of(options);
  const int64_t N = dataset->size();
  Shard shard = extract_shard(backbone, std::move(dataset), transform, options);
  if (world.world_size() == 1) return std::move(shard.set);  // the positions are 0 .. N-1
  return gather_shards(shard, N, world);
}

}  // namespace engine::ssl
