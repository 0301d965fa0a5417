// classifier_accuracy.h - a trained classifier's top-1/top-5 accuracy on an image folder: what
// `moco supervised` reports at the end of a run on DATA/val.
//
// The classifier is a ResNet whose fc is its classifier (ssl/methods/supervised.h), in eval mode
// (BatchNorm's running statistics, none updated). Every image goes through the evaluation transform
// (Resize to size * 256 / 224, CenterCrop, data::eval_transform, as lincls validates) and the
// network without gradients: pooled features (ssl/eval/features.h, which also high-passes them when
// asked), then fc. Counts follow ssl/eval/accuracy.h (ties against the label). Many processes
// (options.world): each rank classifies its shard and the counts are summed over the ranks.
#pragma once

#include <cstdint>
#include <memory>

#include "data/image_folder.h"
#include "layers/resnet.h"
#include "ssl/eval/accuracy.h"
#include "ssl/eval/features.h"

namespace engine::ssl {

// Refuses a folder whose classes are more than the classifier's outputs. Every rank must call it.
TopkCounts classifier_accuracy(nn::ResNet& classifier, std::shared_ptr<const data::ImageFolder> folder,
                               int64_t image_size, const FeatureOptions& options);

}  // namespace engine::ssl
