// classifier_accuracy.cpp - see classifier_accuracy.h.
#include "ssl/eval/classifier_accuracy.h"

#include "engine/autograd.h"
#include "engine/check.h"

namespace engine::ssl {

TopkCounts classifier_accuracy(nn::ResNet& classifier, std::shared_ptr<const data::ImageFolder> folder,
                               int64_t image_size, const FeatureOptions& options) {
  const int64_t classes = static_cast<int64_t>(folder->classes().size());
  ENGINE_CHECK(classes <= classifier.config().num_classes,
               "{} has {} classes, but the classifier tells {} apart; evaluate it on a folder of its own classes",
               folder->root(), classes, classifier.config().num_classes);
  const FeatureSet shard =
      extract_shard_features(classifier, folder, data::eval_transform(static_cast<int>(image_size)), options);
  TopkCounts mine;  // a rank past the end of a small folder has no images
  if (shard.features.size(0) > 0) {
    NoGradGuard no_grad;
    const Tensor logits = (*classifier.child_ptr("fc"))(shard.features);  // (n, C)
    mine = topk_counts(logits, shard.labels);
  }
  return options.world ? sum_over_ranks(mine, *options.world) : mine;
}

}  // namespace engine::ssl
