// supervised.h - the supervised baseline (METHOD.md 9.4) behind the method seam: the same ResNet
// trained with the labels, so a study's "Supervised" row comes from the engine that makes its
// self-supervised rows (trained, checkpointed, resumed and evaluated by the same code).
//
//   logits = f(view)                       (N, C): the ResNet whose fc is the classifier
//                                          Linear(F, C) (F = feature_dim, C the training folder's
//                                          classes), torchvision's initialisation from the seed
//   loss   = cross-entropy(logits, labels)  (ops/cross_entropy.h): the mean over the N rows
//   correct = the rows whose label is the top-1 logit, and among the top 5, counted on the device
//            (ties against the label, as ssl/eval/accuracy.h)
//
// One view per image (views_per_image() = 1): the trainer's loader makes torchvision's standard
// training augmentation (RandomResizedCrop 0.08-1 and a flip, data::lincls_train_augment). The
// recipe around it is the trainer's (ssl/run/trainer.h): SGD with momentum and weight decay, a
// cosine schedule, checkpoints and resume bit for bit on the CPU.
//
// No masking: saliency-guided masking and hard negatives belong to the contrastive step, so
// train_forward refuses a masking. The method still answers the masking's questions: its own
// saliency source is its one encoder (online), which is also its saliency_encoder().
//
// BatchNorm: with G groups (--bn-groups, default 1: global BatchNorm over the batch), each of G
// consecutive groups of N/G images is normalised on its own; group 0 drives the running statistics
// (GhostRunningStats::FirstGroup, as the contrastive methods). Many processes: each rank computes
// the mean loss over its own rows; the gradient average over the ranks (layers/data_parallel.h)
// makes it the global batch's, so nothing is gathered.
//
// Checkpoints: "encoder.<torchvision name>" (the fc included: the classifier), and model_metadata
// records "num_classes", which a resume must match.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ssl/methods/method.h"

namespace engine::ssl {

struct SupervisedConfig {
  std::string arch = "resnet50";
  bool small_stem = false;
  int64_t width = 64;
  int64_t num_classes = 1000;  // the classifier's outputs (the trainer sets the training folder's count)
  int64_t bn_groups = 1;       // 1: global BatchNorm; G: BatchNorm statistics per group of N/G images
};

class Supervised : public ContrastiveMethod {
 public:
  // The classifier from `seed` (torchvision's initialisation), on `device`, flat. Refuses fewer than
  // 2 classes.
  Supervised(const SupervisedConfig& config, uint64_t seed, Device device);

  // images (N, 3, H, W), labels (N) i64 on the same device -> the loss and the accuracy counts.
  ContrastiveOutput forward(const Tensor& images, const Tensor& labels);

  // The seam (ssl/methods/method.h): forward on the batch's one view and its labels; a masking is
  // refused.
  ContrastiveOutput train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking, int64_t step,
                                  MaskedBatch* record) override;
  Method method() const override { return Method::Supervised; }
  size_t views_per_image() const override { return 1; }
  nn::ResNet& online_encoder() override { return *encoder_; }
  nn::ResNet& saliency_encoder() override { return *encoder_; }
  SaliencySourceKind own_saliency_source() const override { return SaliencySourceKind::Online; }
  int64_t bn_groups() const override { return config_.bn_groups; }
  // "encoder.<torchvision name>".
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;
  // "method", "arch", "small_stem", "width", "num_classes".
  Metadata model_metadata() const override;

  nn::ResNet& encoder() { return *encoder_; }
  const SupervisedConfig& config() const { return config_; }

 private:
  SupervisedConfig config_;
  std::shared_ptr<nn::ResNet> encoder_;
};

}  // namespace engine::ssl
