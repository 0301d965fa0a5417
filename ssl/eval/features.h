// features.h - a frozen backbone's pooled features of a whole image folder, for kNN and the
// linear probe's --cached-features.
//
// Each image goes through `transform` (evaluation's Resize + CenterCrop, or any other
// AugmentConfig; its random draws come from (seed, epoch, index) as in training), is high-passed
// when the backbone was trained on high-passed inputs (METHOD.md section 2.9), and through the
// backbone in eval mode without gradients. The images are read in folder order, so row i is
// dataset sample i (an undecodable file is reported by the loader and replaced by the next
// image, whose label comes with it).
#pragma once

#include <cstdint>
#include <string>

#include "data/augment.h"
#include "data/image_folder.h"
#include "engine/tensor.h"
#include "layers/resnet.h"

namespace engine::ssl {

struct FeatureOptions {
  int64_t batch_size = 256;
  int workers = 4;
  uint64_t seed = 0;
  int64_t epoch = 0;       // the data draws' epoch (random transforms only)
  bool high_pass = false;  // high-pass the normalised views first (backbones pretrained with hp)
  Device device = Device::cpu();
};

struct FeatureSet {
  Tensor features;  // (N, feature_dim) f32 on the options' device
  Tensor labels;    // (N) i64 on the host
  int64_t classes = 0;
};

// The backbone's features of every image of `dataset`. `backbone` must be in eval mode.
FeatureSet extract_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                            const data::AugmentConfig& transform, const FeatureOptions& options);

// The input the backbone sees for normalised views x (N, 3, H, W): x, or its high-pass.
Tensor backbone_input(const Tensor& x, bool high_pass);

}  // namespace engine::ssl
