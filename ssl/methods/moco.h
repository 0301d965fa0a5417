// moco.h - MoCo v2 with hard negatives, as one class whose methods are the algorithm's steps
// (the reference's moco/builder.py; METHOD.md sections 6 and 7).
//
//   q = normalize(f_q(query))                                   (N, D), with gradient
//   momentum_update_key_encoder():  theta_k = m theta_k + (1 - m) theta_q      (parameters only)
//   k = normalize(f_k(key)) with shuffle BN                      (N, D), no gradient
//   t = normalize(f_k(hard negative views)) with shuffle BN      (N, n_h, D), no gradient
//   loss = InfoNCE over [q.k | q.queue | alpha q.t] / T, label 0 (ops/infonce.h)
//   dequeue_and_enqueue(k)
//
// Virtual GPUs (METHOD.md sections 6.3 and 8). The reference trains on G GPUs of b images each, with
// BatchNorm statistics per GPU. Here one device holds the whole batch and `bn_groups` = G: every
// BatchNorm of both encoders normalises each of G consecutive groups of N/G images on its own
// (ghost BatchNorm). Shuffle BN: the key images are permuted across the batch before f_k (so each
// group's statistics come from a random mix of images, as the reference's all-gather, shuffle and
// scatter) and the keys are un-permuted after. f_q's running statistics follow group 0 (METHOD.md O12).
//
// Many processes (engine/collectives.h). With a world of W ranks each rank holds N of the W N
// images of the global batch (rank r: images [r N, (r + 1) N)), and the step is the one-process step
// on the global batch with W * bn_groups groups: shuffle BN gathers the key images of every rank,
// permutes the W N of them with the permutation every rank draws from (seed, step), encodes its
// own N of the shuffled batch, gathers the keys and un-permutes them; the enqueue takes the keys of
// every rank, in rank order. The loss is the mean over this rank's rows (the gradient average over
// the ranks, layers/data_parallel.h, makes it the global mean).
//
// Hard negatives (METHOD.md O7). By default each image i gets its own t_i from its own hard-negative
// view, encoded like the keys (what the paper describes). With reference_quirks, the published
// code's behaviour: hard negative j of every image of a group is the j-th image of that group's
// hard-negative batch, encoded alone (BatchNorm over one image), shared by the group's queries.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/collectives.h"
#include "engine/random.h"
#include "engine/serialize.h"
#include "layers/resnet.h"
#include "ssl/masking/masking.h"
#include "ssl/methods/method.h"

namespace engine::ssl {

struct MocoConfig {
  std::string arch = "resnet50";
  bool small_stem = false;         // the 3x3 stride-1 stem without max-pool, for small images
  int64_t width = 64;              // --width: the stem's channels (torchvision's 64; layers/resnet.h)
  int64_t dim = 128;               // --moco-dim
  int64_t queue_size = 65536;      // --moco-k
  double momentum = 0.999;         // --moco-m
  double temperature = 0.07;       // --moco-t
  bool mlp = false;                // --mlp: the 2-layer head (feature -> feature -> dim)
  double alpha = 2.0;              // --alpha: weight of the hard-negative logits
  int64_t bn_groups = 1;           // virtual GPUs: ghost BatchNorm and shuffle-BN groups
  bool reference_quirks = false;   // METHOD.md O7 as the published code (see above)
};

// The shuffle-BN stream of a step: randomness that is a function of (seed, step) only.
inline constexpr uint64_t kShuffleBnStreamBase = 0x5342'0000'0000'0000ull;  // "SB"

// Where shuffle BN draws its permutations: Philox stream `gen`, moved by the value of `step` on
// the device (the step's number: a captured step, --cuda-graphs, draws anew at each replay).
struct ShuffleStream {
  Generator gen;
  Tensor step;  // (1) i64 on the images' device; undefined: no offset
};

class MoCo : public ContrastiveMethod {
 public:
  // f_q from `seed` (torchvision's initialisation), f_k a copy of it, the queue from N(0, 1) with
  // unit columns; everything on `device`, parameters flat. `world` (which must outlive this): the
  // ranks that share each batch; bn_groups is then the groups within this rank.
  MoCo(const MocoConfig& config, uint64_t seed, Device device, Collectives& world = local_collectives());

  // One training forward: query and key (N, 3, H, W), hard (N, n_h, 3, H, W) or undefined for
  // none. Performs the momentum update and the enqueue, as the reference's forward does.
  // `shuffle` draws the shuffle-BN permutations.
  ContrastiveOutput forward(const Tensor& query, const Tensor& key, const Tensor& hard, ShuffleStream& shuffle);

  // The paper's step (METHOD.md section 1): the momentum update, the keys (whose layer4 map is the k
  // view's saliency for the momentum source), then the masked query and hard-negative views
  // (ssl/masking/masking.h), then the query and hard-negative encodings and the loss. `query_view` and
  // `key_view` are the normalised views; the masks are those of step `step`. `record`, if given,
  // receives what the encoders saw.
  ContrastiveOutput forward_masked(const Tensor& query_view, const Tensor& key_view, const SaliencyGuidedMasking& masking,
                            int64_t step, ShuffleStream& shuffle, MaskedBatch* record = nullptr);

  // The seam (ssl/methods/method.h): forward or forward_masked on the batch's two views (the query
  // view first; the labels are not read) with the shuffle-BN stream of (seed, step).
  ContrastiveOutput train_forward(const TrainingBatch& batch, const SaliencyGuidedMasking* masking, int64_t step,
                                  MaskedBatch* record) override;
  Method method() const override { return Method::MocoV2; }
  size_t views_per_image() const override { return 2; }
  nn::ResNet& online_encoder() override { return *encoder_q_; }
  nn::ResNet& saliency_encoder() override { return *encoder_k_; }
  SaliencySourceKind own_saliency_source() const override { return SaliencySourceKind::Momentum; }
  int64_t bn_groups() const override { return config_.bn_groups; }
  // "arch", "small_stem", "width", "moco_dim", "moco_k", "mlp" (and "method").
  Metadata model_metadata() const override;

  // The steps, public so tests can call them one by one.
  Tensor encode_query(const Tensor& images);                    // (N, D) unit rows, recorded
  void momentum_update_key_encoder();
  // (N, D) unit rows, no gradient; `saliency`, if given, receives the channel-summed layer4 map
  // of each image (N, G, G), in the images' order. Shuffle BN over every rank's images.
  Tensor encode_keys(const Tensor& images, ShuffleStream& shuffle, Tensor* saliency = nullptr);
  Tensor encode_hard_negatives(const Tensor& hard, ShuffleStream& shuffle);  // (N, n_h, D), no gradient
  // The loss over [q.k | q.queue | alpha q.t] / T (t may be undefined), then the enqueue of k.
  ContrastiveOutput contrast(const Tensor& q, const Tensor& k, const Tensor& t);
  void dequeue_and_enqueue(const Tensor& keys);                 // keys (W N, D): every rank's

  nn::ResNet& encoder_q() { return *encoder_q_; }
  nn::ResNet& encoder_k() { return *encoder_k_; }
  const Tensor& queue() const { return queue_; }  // (D, K): column j is a negative key
  int64_t queue_ptr() const { return static_cast<int64_t>(queue_ptr_.item()); }  // reads the device
  const MocoConfig& config() const { return config_; }
  Device device() const { return device_; }

  // "encoder_q.<torchvision name>", "encoder_k.<...>", "queue" (D, K), "queue_ptr" (1) i64:
  // the reference's state dict below its DDP "module." prefix.
  NamedTensors state_dict() const override;
  // Strict: every key of state_dict() with its shape, nothing else.
  void load_state_dict(const NamedTensors& state) override;

 private:
  MocoConfig config_;
  uint64_t seed_ = 0;
  Device device_;
  Collectives& world_;
  std::shared_ptr<nn::ResNet> encoder_q_, encoder_k_;
  Tensor queue_;      // (D, K)
  Tensor queue_ptr_;  // (1) i64 on the device: the next column to write
};

// The encoders' shape: arch, stem, width, dim and head of `config`.
EncoderShape encoder_shape(const MocoConfig& config);

}  // namespace engine::ssl
