// backbone.h - the network an evaluation measures (METHOD.md section 9): the online encoder of a
// training checkpoint without its head (MoCo's query encoder, SimCLR's encoder, the supervised
// baseline's ResNet), a ResNet with torchvision's names, or a randomly initialised ResNet of a given
// shape (the honest baseline: what the architecture gives before any training).
//
// The backbone is frozen: eval mode (BatchNorm normalises with its running statistics, which it
// never updates) and used under NoGradGuard only. Its `fc` is whatever the file held (MoCo's head,
// or torchvision's classifier) and is never used: evaluation reads ResNet::features, the pooled
// (N, feature_dim) output of layer4.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/device.h"
#include "engine/precision.h"
#include "engine/serialize.h"
#include "layers/resnet.h"

namespace engine::ssl {

inline constexpr const char* kRandomBackbone = "random";

struct BackboneSpec {
  // A `moco pretrain` checkpoint, a safetensors file with torchvision's ResNet names (for example
  // converted by tools/convert_torchvision_resnet.py), or "random".
  std::string pretrained;
  // The architecture of "random"; a file brings its own.
  nn::ResNetConfig random_config;
  uint64_t random_seed = 0;
  // --precision: bf16 runs the frozen trunk with bf16 activations (engine/precision.h); the
  // features it gives are f32 either way.
  Precision precision = Precision::fp32;
};

struct Backbone {
  std::shared_ptr<nn::ResNet> net;  // frozen: eval mode, on the device
  std::string description;          // for logs: where it came from
  bool trained_on_high_pass = false;  // pretrained with --strategy hp: its inputs were high-passed
  int64_t image_size = 0;           // the pretraining's --image-size, when the file says (else 0)
};

Backbone load_backbone(const BackboneSpec& spec, Device device);

// --high-pass of the evaluation commands: auto (when the backbone was pretrained with hp, METHOD.md
// section 9), on, off.
enum class HighPass { Auto, On, Off };
HighPass parse_high_pass(const std::string& text);  // "auto", "on", "off"

// What the evaluation protocols feed `backbone` given the flags: the crop side (`requested`, or 0:
// the pretraining's --image-size, else 224) and whether the inputs are high-passed.
int64_t evaluation_image_size(int64_t requested, const Backbone& backbone);
bool evaluation_high_pass(HighPass requested, const Backbone& backbone);


// A bit-exact copy of a module's parameters and buffers, to prove later that nothing changed.
struct FrozenStateCheck {
  explicit FrozenStateCheck(const nn::Module& module);
  // The names of the tensors that differ in any bit from the copy (empty: unchanged).
  std::vector<std::string> changed(const nn::Module& module) const;

 private:
  NamedTensors copy_;  // on the host
};

}  // namespace engine::ssl
