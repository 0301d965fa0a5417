// simclr.h - SimCLR (Chen et al., 2020) with the paper's saliency-guided masking and hard negatives,
// as one class whose methods are the algorithm's steps (docs/METHOD.md section 13).
//
//   z = normalize(f(view1 ‖ view2))                  (2N, D), with gradient: one encoder, no
//                                                    momentum copy, no queue
//   loss = NT-Xent over the 2N rows / T              (ops/nt_xent.h): each row's positive is the
//                                                    other view of its image, its negatives the
//                                                    2N - 2 other rows (symmetric: both views are
//                                                    anchors)
// The paper's step (with a masking --strategy):
//   saliency     the encoder's own layer4 maps of both unmasked views (no-grad forwards; SimCLR
//                has no momentum encoder, so the maps come from the network being trained:
//                --saliency online), or a frozen localizer (pretrained:FILE)
//   view 1       masked in pos mode around its foreground (ssl/masking/masking.h)
//   t            normalize(f(n_h neg-masked copies of view 2)), no gradient   (N, n_h, D)
//   loss         NT-Xent with alpha t_i appended to both rows of image i
//
// BatchNorm. The reference trains with global BatchNorm over the whole batch (--bn-groups 1, the
// default here). With G groups, each group holds both views of N/G images, as each GPU of a
// data-parallel run holds both views of its share; group 0 drives the running statistics
// (GhostRunningStats::FirstGroup, as MoCo).
//
// Many processes (engine/collectives.h). Each of W ranks holds N of the W N images; it encodes both
// views of its own, gathers every rank's rows (with their gradient, layers/data_parallel.h) into the
// global batch's NT-Xent order, and computes the loss over all 2 W N rows, as the one-process step
// on the global batch with W * bn_groups groups does (SimCLR's cross-replica negatives).
//
// Forwards that do not train (the saliency maps, the hard negatives) leave the running statistics
// as they were: they use the batch's statistics, like every training-mode forward, but the
// evaluation-time statistics follow the trained forward only.
//
// Choices where the paper is silent, labelled in docs/METHOD.md 13: the hard negatives carry no
// gradient (constants, like MoCo's keys and queue); both views are anchors (symmetric loss);
// T = 0.2 (--simclr-t), B = 256, 200 epochs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/collectives.h"
#include "ssl/methods/method.h"

namespace engine::ssl {

struct SimclrConfig {
  std::string arch = "resnet50";
  bool small_stem = false;
  int64_t width = 64;
  int64_t dim = 128;               // --simclr-dim: the head's output (2048-2048-128 for ResNet-50)
  double temperature = 0.2;        // --simclr-t
  double alpha = 2.0;              // --alpha: weight of the hard-negative logits
  int64_t bn_groups = 1;           // 1: global BatchNorm (the reference); G: both views of N/G images per group
};

class SimCLR : public ContrastiveMethod {
 public:
  // The encoder with its MLP head from `seed` (torchvision's initialisation), on `device`, flat.
  // `world` (which must outlive this): the ranks that share each batch.
  SimCLR(const SimclrConfig& config, uint64_t seed, Device device, Collectives& world = local_collectives());

  // Plain SimCLR: view1, view2 (N, 3, H, W).
  ContrastiveOutput forward(const Tensor& view1, const Tensor& view2);
  // The paper's step on the normalised views: saliency, the masked view 1 and the hard negatives
  // from `masking` (the masks of step `step`, read from step_number on the device when given:
  // SaliencyGuidedMasking::mask), then the loss. `record`, if given, receives what the encoder saw.
  ContrastiveOutput forward_masked(const Tensor& view1, const Tensor& view2, const SaliencyGuidedMasking& masking,
                                   int64_t step, MaskedBatch* record = nullptr, const Tensor& step_number = Tensor());

  // The steps, public so tests can call them one by one.
  // (2N, D) unit rows, recorded: rows 0..N-1 are a's images, rows N..2N-1 b's.
  Tensor encode_views(const Tensor& a, const Tensor& b);
  // hard (N, n_h, 3, H, W) -> (N, n_h, D) unit rows, no gradient, running statistics untouched.
  Tensor encode_hard_negatives(const Tensor& hard);
  // NT-Xent over z (2N, D) with the hard negatives t (N, n_h, D) or undefined: this rank's rows,
  // gathered with every other rank's first.
  ContrastiveOutput contrast(const Tensor& z, const Tensor& t) const;

  // The seam (ssl/methods/method.h): forward or forward_masked on the batch's two views (the labels
  // are not read).
  ContrastiveOutput train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking, int64_t step,
                                  MaskedBatch* record) override;
  Method method() const override { return Method::SimClr; }
  size_t views_per_image() const override { return 2; }
  nn::ResNet& online_encoder() override { return *encoder_; }
  nn::ResNet& saliency_encoder() override { return *encoder_; }
  SaliencySourceKind own_saliency_source() const override { return SaliencySourceKind::Online; }
  int64_t bn_groups() const override { return config_.bn_groups; }
  // "encoder.<torchvision name>".
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;
  // "method", "arch", "small_stem", "width", "simclr_dim", "mlp".
  Metadata model_metadata() const override;

  nn::ResNet& encoder() { return *encoder_; }
  const SimclrConfig& config() const { return config_; }

 private:
  SimclrConfig config_;
  Collectives& world_;
  std::shared_ptr<nn::ResNet> encoder_;
};

EncoderShape encoder_shape(const SimclrConfig& config);  // always with the MLP head

}  // namespace engine::ssl
