// masking.h - saliency-guided masking and hard negatives around one MoCo step (METHOD.md sections 2.9,
// 4 and 5): what the encoders see for each strategy, where the saliency comes from, and the masked
// query and hard-negative views.
//
// Per batch, from the two normalised views q and k (N, 3, H, W):
//   encoder inputs (2.9)  hp: HP(q), HP(k) (the high-pass filter, 11 taps, sigma 5); blur, mean: q, k
//   saliency (4.5)        momentum: the key encoder's layer4 map of the encoder inputs (the k map is
//                         a by-product of the key forward, the q map one more no-grad forward);
//                         online (SimCLR): the same from the trained encoder, two no-grad forwards;
//                         pretrained:FILE: a frozen ResNet's map of the RGB views q and k (the
//                         reference); none: every cell foreground
//   foreground (4.3)      mu - 0.6 sigma over the G x G map (the published row-sorted rule, O1, with
//                         quirks); G is the map's side, 7 for ResNet-50 at 224
//   query input           the q input masked in pos mode with q's foreground (ops/saliency_mask.h)
//   hard negatives        --num-nonsem copies of the k input, each masked in neg mode with k's
//                         foreground, with its own draws: (N, n_h, 3, H, W)
// Fills: hp noise; blur the strongly blurred view (31 taps, sigma 10) of q for the query and of k
// for the hard negatives; mean the view's channel means.
//
// Randomness: the masks of step s come from Philox streams kMaskStreamBase + 16 s (the query) and
// + 16 s + 8 (the hard negatives) under the run's seed, so a resumed run masks as the original.
//
// The masking op draws identical masks on the CPU and CUDA for identical foreground cells; a whole
// CPU run and a CUDA run can still differ where a map value sits at the threshold, since each
// backend sums the feature maps in its own order.
//
// One design decision beyond the reference: under hp with the momentum source, the key encoder is
// trained on high-passed images, so its maps are taken on the high-passed inputs it knows; the
// pretrained localizer sees RGB, as in the reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "layers/resnet.h"
#include "ssl/masking/saliency.h"

namespace engine::ssl {

enum class MaskStrategy { None, Hp, Blur, Mean };
MaskStrategy parse_mask_strategy(const std::string& name);  // "none", "hp", "blur", "mean"
const char* mask_strategy_name(MaskStrategy strategy);

// Where the maps come from: momentum (MoCo's key encoder), online (SimCLR's one encoder: it has no
// momentum encoder), pretrained:FILE (a frozen localizer), none (every cell foreground). Each
// method accepts its own source and the two others (ssl/methods/method.h, own_saliency_source);
// Own, the library's default, stands for the method's own source until the trainer resolves it.
enum class SaliencySourceKind { Own, Momentum, Online, Pretrained, None };
struct SaliencySource {
  SaliencySourceKind kind = SaliencySourceKind::Own;
  std::string file;  // pretrained: the safetensors file
};
SaliencySource parse_saliency_source(const std::string& text);  // "momentum", "online", "pretrained:FILE", "none"
std::string saliency_source_text(const SaliencySource& source);  // the inverse

struct MaskingConfig {
  MaskStrategy strategy = MaskStrategy::None;
  SaliencySource saliency;
  int64_t num_nonsem = 0;         // hard negatives per image
  int64_t bn_groups = 1;          // virtual GPUs: the published code's shared noise is per group (O6)
  bool reference_quirks = false;  // O1 (foreground rule), O3-O6 (masking)
  uint64_t seed = 0;
  // This process's rank: its N images are images [rank N, (rank + 1) N) of the global batch and
  // draw their masks as those images do in one process (engine/collectives.h).
  int64_t rank = 0;
};

inline constexpr uint64_t kMaskStreamBase = 0x4D41'0000'0000'0000ull;  // "MA"
inline constexpr uint64_t kMaskStreamsPerStep = 16;  // the query's and the hard negatives' streams of one step

// The encoders' inputs for one batch and how they were made (what `moco batch` writes).
struct MaskedBatch {
  Tensor query;                // (N, 3, H, W) the query input, masked (pos)
  Tensor key;                  // (N, 3, H, W) the key input, never masked
  bool high_passed = false;    // the inputs are high-passed views (hp), not normalised RGB
  Tensor hard_negative;        // (N, n_h, 3, H, W) masked copies of the key input (neg); undefined if n_h = 0
  Tensor saliency_query, saliency_key;  // (N, G, G) f32 maps on the views' device (undefined for `none`)
  Tensor fg_query, fg_key;     // (N, G, G) u8 on the views' device, 1 = foreground cell
  // On the views' device (a training step does not wait for them):
  Tensor mask_query;           // (N, 3, G, G) u8, 1 = that channel of that cell masked by the grid
  Tensor mask_hard_negative;   // (N, n_h, 3, G, G) u8
  Tensor focal_query;          // (N) u8, 1 = the focal mask was used instead
  Tensor focal_hard_negative;  // (N, n_h) u8
};

class SaliencyGuidedMasking {
 public:
  // Loads and freezes the localizer for pretrained:FILE (torchvision names, or a `moco pretrain`
  // checkpoint's encoder_q) on `device`.
  SaliencyGuidedMasking(const MaskingConfig& config, Device device);

  const MaskingConfig& config() const { return config_; }
  // True when MoCo's key forward should hand over its layer4 saliency map (the momentum source, or
  // Own, which is that source for MoCo; SimCLR never asks).
  bool wants_key_saliency() const {
    return config_.saliency.kind == SaliencySourceKind::Momentum || config_.saliency.kind == SaliencySourceKind::Own;
  }

  // METHOD.md 2.9: the view as the encoders see it (high-passed under hp).
  Tensor encoder_input(const Tensor& view) const;

  // The whole masking of a batch. query_view/key_view: the normalised views; query_input and
  // key_input: encoder_input of them; key_saliency: (N, G, G) from the key forward (momentum
  // source; if undefined it is computed with saliency_encoder); saliency_encoder: the method's
  // own encoder for the momentum and online sources (MoCo's f_k, SimCLR's encoder), whose
  // no-grad forwards give the q map (and the k map when not given). The masks are those of step
  // `step`; step_number, if given, is that number in a (1) i64 tensor on the views' device, which
  // the masking kernels read (a captured step, --cuda-graphs, draws anew at each replay).
  MaskedBatch mask(const Tensor& query_view, const Tensor& key_view, const Tensor& query_input,
                   const Tensor& key_input, const Tensor& key_saliency, nn::ResNet& saliency_encoder,
                   int64_t step, const Tensor& step_number = Tensor()) const;

 private:
  // The saliency maps (N, G, G) of one view: `view` for the localizer, `input` for f_k.
  Tensor saliency_of(const Tensor& view, const Tensor& input, nn::ResNet& saliency_encoder) const;
  // The foreground cells (N, G, G) u8 on the host of maps (N, G, G), or all cells when maps is
  // undefined (the none source).
  Tensor foreground_of(const Tensor& maps, int64_t N, int64_t side, const nn::ResNet& saliency_encoder) const;

  MaskingConfig config_;
  Device device_;
  std::shared_ptr<nn::ResNet> localizer_;  // pretrained source only
};

// A frozen ResNet (eval mode, no gradients) from a safetensors file: torchvision's key names
// (conv1.weight, layer1.0.conv1.weight, ..., fc.*; the architecture is read from the keys) or a
// `moco pretrain` checkpoint (its encoder_q.*; the head is dropped).
std::shared_ptr<nn::ResNet> load_localizer(const std::string& path, Device device);

}  // namespace engine::ssl
