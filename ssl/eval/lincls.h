// lincls.h - linear classification on a frozen backbone: the reference's main_lincls.py
// (METHOD.md section 9), the standard measure of what self-supervised features learned.
//
//   backbone  the pretrained online encoder (MoCo's encoder_q, SimCLR's encoder) without its head (ssl/eval/backbone.h), frozen in eval mode: its
//             parameters and BatchNorm statistics never change, which is checked bit for bit
//             after the first epoch and at the end
//   fc        Linear(feature_dim, classes), weight ~ N(0, 0.01^2), bias 0, the only trained tensors
//   loss      cross-entropy; SGD lr 30, momentum 0.9, weight decay 0, x0.1 at epochs 60 and 80 of 100
//   train     RandomResizedCrop(size) (scale 0.08-1) + flip; eval: Resize(size * 256 / 224) +
//             CenterCrop(size); both high-passed when the backbone was pretrained with hp
//   report    top-1 and top-5 on val/ after every epoch; the best and the last epoch
//
// The backbone runs under NoGradGuard: with its weights frozen, the reference's backward through
// it produces gradients nobody uses, so the result is the same. The validation features do not
// depend on the epoch (eval mode, no random draws), so they are computed once.
//
// --cached-features (fast, NOT the paper's protocol): the training images' features are computed
// once from the evaluation transform (no augmentation) and the classifier trains on those, in a
// new random order every epoch; minutes become seconds, for quick iteration.
//
// SAVE_DIR holds checkpoints/last.safetensors (every epoch; fc, SGD's momentum, the position and
// the best so far) and checkpoints/best.safetensors (the epoch of best top-1), metrics.jsonl (one
// line per epoch, then a "final" line), logs/ (TensorBoard) and args.json. --resume continues
// after the last finished epoch.
//
// Distributed (config.world, W ranks; the reference's main_lincls.py under DDP): -b stays the global
// batch, each rank taking its b = B / W share (data/loader.h's sharding; --cached-features deals each
// batch of its order the same way) and the classifier's gradients are averaged over the ranks
// (layers/data_parallel.h). The epoch's short last batch may leave a rank fewer images or none (it
// still takes part in the average, with zero gradients); each rank weights its mean loss by
// n_r W / n_global, so the average is the gradient of the global batch's mean, and W ranks take the
// steps one process takes, up to the order of the sums. The features are extracted by the ranks
// together (ssl/eval/features.h); each rank validates its shard of val/ and the counts are added, so
// every rank reports the whole set's accuracy. Rank 0 alone writes SAVE_DIR; every rank reads the
// checkpoint it resumes from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/collectives.h"
#include "engine/device.h"
#include "ssl/eval/backbone.h"

namespace engine::ssl {

inline constexpr const char* kLinclsCheckpointFormat = "moco-lincls-checkpoint/1";

struct LinclsConfig {
  std::string data;      // a root with train/ and val/
  std::string save_dir;  // checkpoints/, metrics.jsonl, logs/, args.json
  BackboneSpec backbone;
  HighPass high_pass = HighPass::Auto;  // --high-pass
  int64_t num_classes = 0;         // --n-classes; 0: the training folder's class count
  double lr = 30.0;
  double momentum = 0.9;
  double weight_decay = 0.0;
  int64_t epochs = 100;
  std::vector<int64_t> schedule = {60, 80};
  int64_t batch_size = 256;  // the global batch: W ranks take B / W each
  int64_t image_size = 0;  // 0: the pretraining's --image-size when the checkpoint says, else 224
  bool cached_features = false;
  std::string resume;  // "", a lincls checkpoint, or "auto"
  uint64_t seed = 0;
  int workers = 4;
  int64_t print_freq = 10;
  Device device = Device::cpu();
  std::string args_json;
  // The ranks of a distributed run, every one calling with the same config; null: this process
  // alone. Collectives for tensors on `device`.
  Collectives* world = nullptr;
};

struct LinclsResult {
  double best_top1 = 0, best_top5 = 0;
  int64_t best_epoch = -1;  // counted from 0
  double last_top1 = 0, last_top5 = 0;
  int64_t epochs_done = 0;
  bool high_pass = false;
  int64_t image_size = 0;
  std::string backbone;  // its description
  NamedTensors backbone_state;  // the backbone's parameters and buffers after training, on its device
};

// Trains (or resumes) the linear classifier; throws engine::Error with a clear message on bad
// input, and when the backbone changed (which would make the result meaningless). Distributed,
// every rank returns the same result.
LinclsResult linear_classification(const LinclsConfig& config);

}  // namespace engine::ssl
