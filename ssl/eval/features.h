// features.h - a frozen backbone's pooled features of a whole image folder, for kNN and the
// linear probe's --cached-features.
//
// Each image goes through `transform` (evaluation's Resize + CenterCrop, or any other
// AugmentConfig; its random draws come from (seed, epoch, index) as in training), is high-passed
// when the backbone was trained on high-passed inputs (METHOD.md section 2.9), and through the
// backbone in eval mode without gradients. The images are read in folder order, so row i is
// dataset sample i (an undecodable file is reported by the loader and replaced by the next
// image, whose label comes with it).
//
// Distributed (options.world set, W ranks): each rank extracts its shard only, cut by the loader's
// rule (data/loader.h: global batches of W B, rank r the r-th B of each, the short last one dealt in
// slices of B, so a rank may get fewer images or none), after taking rank 0's BatchNorm statistics
// (nn::broadcast_buffers: rank 0's are the model's, as for DDP). extract_features then gathers the
// shards, so every rank holds the matrix one process computes with batches of B, row for row:
// each rank's rows go to the dataset positions the sampler dealt it. extract_shard_features keeps
// the shard, for a protocol that counts on it (kNN's queries, the linear probe's validation) and adds
// the counts over the ranks.
#pragma once

#include <cstdint>
#include <string>

#include "data/augment.h"
#include "data/image_folder.h"
#include "engine/collectives.h"
#include "engine/tensor.h"
#include "layers/resnet.h"

namespace engine::ssl {

struct FeatureOptions {
  int64_t batch_size = 256;  // images per forward, on each rank
  int workers = 4;
  uint64_t seed = 0;
  int64_t epoch = 0;       // the data draws' epoch (random transforms only)
  bool high_pass = false;  // high-pass the normalised views first (backbones pretrained with hp)
  Device device = Device::cpu();
  // The ranks that share the work, every one calling with the same options; null: this process
  // alone. Collectives for tensors on `device` (NCCL's for a GPU; host tensors go through MPI).
  Collectives* world = nullptr;
};

struct FeatureSet {
  Tensor features;  // (N, feature_dim) f32 on the options' device
  Tensor labels;    // (N) i64 on the host
  int64_t classes = 0;
};

// The backbone's features of every image of `dataset`, in dataset order, on every rank. `backbone`
// must be in eval mode. Every rank must call it (collectives).
FeatureSet extract_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                            const data::AugmentConfig& transform, const FeatureOptions& options);

// This rank's shard only (n_r rows, possibly 0), in the order the loader deals it; without a world,
// the whole dataset as extract_features. Every rank must call it (the BatchNorm broadcast).
FeatureSet extract_shard_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                                  const data::AugmentConfig& transform, const FeatureOptions& options);

// The input the backbone sees for normalised views x (N, 3, H, W): x, or its high-pass.
Tensor backbone_input(const Tensor& x, bool high_pass);

}  // namespace engine::ssl
