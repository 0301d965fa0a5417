// supervised.cpp - see supervised.h. Shape letters: N images, C classes.
#include "ssl/methods/supervised.h"

#include "engine/check.h"
#include "layers/layers.h"
#include "ops/cross_entropy.h"

namespace engine::ssl {

Supervised::Supervised(const SupervisedConfig& config, uint64_t seed, Device device) : config_(config) {
  ENGINE_CHECK(config.num_classes >= 2,
               "supervised: a classifier needs at least 2 classes, found {}; the training folder must hold one "
               "subfolder per class (DATA/train/<class>/<image>)",
               config.num_classes);
  ENGINE_CHECK(config.bn_groups >= 1, "supervised: the BatchNorm group count must be at least 1, found {}",
               config.bn_groups);
  encoder_ = make_encoder({config.arch, config.small_stem, config.width, config.num_classes, /*mlp=*/false}, seed);
  nn::set_ghost_batchnorm(*encoder_, config.bn_groups, GhostRunningStats::FirstGroup);
  encoder_->flatten_parameters();
  encoder_->to(device);
}

ContrastiveOutput Supervised::forward(const Tensor& images, const Tensor& labels) {
  ENGINE_CHECK(images.dim() == 4, "supervised: the images must be an (N, 3, H, W) batch, found {}", images.str());
  const int64_t N = images.size(0);
  ENGINE_CHECK(N % config_.bn_groups == 0,
               "supervised: the batch of {} images does not split into {} BatchNorm groups; use a batch that is a "
               "multiple of --bn-groups",
               N, config_.bn_groups);
  ENGINE_CHECK(labels.defined(), "supervised: the batch has no labels; a supervised step needs each image's class");
  const Tensor logits = encoder_->forward(images);  // (N, C), recorded
  const CrossEntropyResult r = cross_entropy_with_accuracy(logits, labels);
  return {r.loss, r.correct, N};
}

ContrastiveOutput Supervised::train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking,
                                            int64_t /*step*/, MaskedBatch* /*record*/) {
  ENGINE_CHECK(masking == nullptr,
               "supervised: saliency-guided masking and hard negatives belong to the contrastive methods' step; a "
               "supervised run trains on the labelled views as they are (--strategy none)");
  check_batch_views(batch, views_per_image(), "supervised");
  return forward(batch.views[0], batch.labels);  // views[0] (N, 3, H, W), labels (N)
}

NamedTensors Supervised::state_dict() const {
  NamedTensors out;
  for (const auto& [name, t] : encoder_->state_dict()) out.emplace_back("encoder." + name, t);
  return out;
}

void Supervised::load_state_dict(const NamedTensors& state) {
  const std::string prefix = "encoder.";
  NamedTensors own;
  for (const auto& [name, t] : state) {
    ENGINE_CHECK(name.rfind(prefix, 0) == 0,
                 "supervised: a state holds encoder.* only, found '{}'; is this a checkpoint of another method?",
                 name.substr(0, 80));
    own.emplace_back(name.substr(prefix.size()), t);
  }
  encoder_->load_state_dict(own);
}

Metadata Supervised::model_metadata() const {
  return {{"method", method_name(Method::Supervised)},
          {"arch", config_.arch},
          {"small_stem", config_.small_stem ? "true" : "false"},
          {"width", std::to_string(config_.width)},
          {"num_classes", std::to_string(config_.num_classes)}};
}

}  // namespace engine::ssl
