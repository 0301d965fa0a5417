// method.h - the seam between a training method and everything around it.
//
// A method owns its networks and its loss; the rest of the engine (the trainer, checkpoints and
// resume, the metrics, the kNN monitor, lincls and knn, the masking) reaches it only through
// ContrastiveMethod, so it serves MoCo v2 (ssl/methods/moco.h), SimCLR (ssl/methods/simclr.h) and
// the supervised baseline (ssl/methods/supervised.h) without knowing which:
//
//   views_per_image()                            the augmented views of each image a training
//                                                batch carries (2 for the contrastive methods,
//                                                1 for supervised)
//   train_forward(batch, masking, step)          one training forward on a batch (its views and
//                                                labels): the loss (backward reaches the online
//                                                encoder only) and the method's own updates (MoCo:
//                                                the momentum update and the enqueue)
//   online_encoder()                             the network the optimizer trains and evaluation
//                                                measures (MoCo's f_q, SimCLR's encoder, the
//                                                supervised classifier)
//   saliency_encoder()                           where masking takes its maps when the saliency
//                                                comes from the method itself (MoCo: the key
//                                                encoder f_k; SimCLR, supervised: its one encoder)
//   state_dict / load_state_dict                 everything a checkpoint must hold to continue
//   model_metadata()                             what a checkpoint records of the model, and what a
//                                                resumed run must agree with
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/serialize.h"
#include "layers/resnet.h"
#include "ssl/masking/masking.h"

namespace engine::ssl {

enum class Method { MocoV2, SimClr, Supervised };
// "mocov2", "simclr", "supervised": flags and checkpoints
const char* method_name(Method method);
Method method_from_name(const std::string& name);  // throws for another name
// The prefix of a method's online encoder in its state_dict() and checkpoints: "encoder_q." (MoCo
// v2) or "encoder." (SimCLR, supervised).
const char* online_prefix(Method method);
// The online encoder in words, for logs: "encoder_q", "SimCLR's encoder", "the supervised classifier".
const char* online_encoder_description(Method method);

// A batch as a training forward takes it: the loader's augmented views of N images and their labels.
struct TrainingBatch {
  std::vector<Tensor> views;  // views_per_image() normalised views, each (N, 3, H, W)
  Tensor labels;              // (N) i64 on the views' device: each image's class; read by supervised only
  // (1) i64 on the views' device: the step's number as the device reads it (MoCo's shuffle BN draws
  // from it), so that a captured step (--cuda-graphs) draws anew at each replay. Undefined: the
  // method makes it from train_forward's `step`.
  Tensor step_number;
};

// What one training forward leaves on the device (a step never waits to read it).
struct ContrastiveOutput {
  Tensor loss;     // () mean loss over the rows; backward reaches the online encoder only
  Tensor correct;  // (2,) i64: rows whose target (the positive, or the label) is the top-1 logit, and
                   // among the top 5
  int64_t rows = 0;
};

// Refuses, naming `who` (the method), a batch that does not hold `views` views of one shape (N, 3, H, W).
void check_batch_views(const TrainingBatch& batch, size_t views, const char* who);

// The network every method trains: a ResNet whose fc is the projection head: Linear(F, dim), or with
// mlp Linear(F, F) - ReLU - Linear(F, dim), named fc.0 and fc.2 as in MoCo's reference (F = 2048
// for ResNet-50, 512 for ResNet-18/34, scaled by width / 64); for the supervised baseline the
// classifier Linear(F, classes). torchvision's initialisation from `seed`; the extra head layer
// from its own stream.
struct EncoderShape {
  std::string arch = "resnet50";
  bool small_stem = false;  // the 3x3 stride-1 stem without max-pool, for small images
  int64_t width = 64;       // the stem's channels (torchvision's 64; layers/resnet.h)
  int64_t dim = 128;        // the embedding (the classes of a classifier)
  bool mlp = false;
};
std::shared_ptr<nn::ResNet> make_encoder(const EncoderShape& shape, uint64_t seed);

class ContrastiveMethod {
 public:
  virtual ~ContrastiveMethod() = default;

  virtual Method method() const = 0;
  // The views of each image a training batch carries (the loader's LoaderOptions::views).
  virtual size_t views_per_image() const = 0;
  // One training forward. batch: views_per_image() normalised views (N, 3, H, W) and the labels
  // (N); the contrastive methods take views[0] and views[1] and ignore the labels. With a masking
  // (ssl/masking/masking.h) it is the paper's step: view 1 masked around its salient cells, hard
  // negatives from masked copies of view 2; `record` then receives what the encoders saw (a
  // method without a masked step refuses a masking). `step`: the optimizer steps done, which
  // seeds the step's random draws.
  virtual ContrastiveOutput train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking,
                                          int64_t step, MaskedBatch* record) = 0;

  virtual nn::ResNet& online_encoder() = 0;
  virtual nn::ResNet& saliency_encoder() = 0;
  // The --saliency source that means "this method's own encoder" (momentum or online).
  virtual SaliencySourceKind own_saliency_source() const = 0;
  virtual int64_t bn_groups() const = 0;

  virtual NamedTensors state_dict() const = 0;
  virtual void load_state_dict(const NamedTensors& state) = 0;  // strict
  // "method" and the model's shape ("arch", "small_stem", "width", embedding size or classes, ...).
  virtual Metadata model_metadata() const = 0;
};

}  // namespace engine::ssl
