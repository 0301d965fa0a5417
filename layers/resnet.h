// resnet.h - ResNet-18/34/50 exactly as torchvision builds them (ResNet v1.5: in a Bottleneck the
// stride sits in the 3x3 convolution), with torchvision's module names, so state dicts load both
// ways with strict checking.
//
//   conv1 (7x7/2, pad 3) - bn1 - relu - maxpool (3/2, pad 1)       stem, 224 -> 56
//   layer1..layer4: blocks of `planes` 64, 128, 256, 512; strides 1, 2, 2, 2
//   avgpool (global) - flatten - fc (Linear(512 * expansion, num_classes))
// BasicBlock (ResNet-18/34, expansion 1): conv3x3(stride) bn relu conv3x3 bn, + identity, relu.
// Bottleneck (ResNet-50, expansion 4): conv1x1 bn relu conv3x3(stride) bn relu conv1x1 bn,
//   + identity, relu. A block whose stride or width changes gets downsample = conv1x1(stride) bn.
//
// The small-image stem (SmallStem) replaces conv1 by a 3x3 stride-1 convolution and drops the
// max-pool, for 32-96 pixel inputs (the CIFAR-style variant); its state dict then differs from
// torchvision's only in conv1.weight's shape.
//
// Initialisation as torchvision: convolutions Kaiming normal (fan_out), BatchNorm weight 1 and
// bias 0, fc PyTorch's Linear default. zero_init_residual is off, as torchvision's default.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/precision.h"
#include "layers/layers.h"

namespace engine::nn {

class BasicBlock : public Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample, Generator& gen);
  const char* type_name() const override { return "BasicBlock"; }
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Module> conv1_, bn1_, relu_, conv2_, bn2_, downsample_;
};

class Bottleneck : public Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample, Generator& gen);
  const char* type_name() const override { return "Bottleneck"; }
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Module> conv1_, bn1_, conv2_, bn2_, conv3_, bn3_, relu_, downsample_;
};

enum class ResNetStem { ImageNet, SmallImage };

struct ResNetConfig {
  std::string arch = "resnet50";  // resnet18, resnet34, resnet50
  int64_t num_classes = 1000;
  ResNetStem stem = ResNetStem::ImageNet;
  // Channels of the stem and layer1; layer2..4 have 2, 4 and 8 times as many (times 4 after a
  // Bottleneck). torchvision's 64; narrower nets (16, 32) train small-image experiments in minutes
  // on a CPU. State dicts of another width differ in every shape.
  int64_t width = 64;
};

class ResNet : public Module {
 public:
  ResNet(const ResNetConfig& config, Generator& gen);
  const char* type_name() const override { return "ResNet"; }
  Tensor forward(const Tensor& x) override;
  // layer4's output, before pooling: (N, feature_dim(), H/32, W/32) (H/8 with the small stem);
  // summed over channels it is the saliency map (ssl/masking/saliency.h).
  Tensor feature_map(const Tensor& x);
  // The output of stage `stage` (1..4 for layer1..layer4), before pooling: (N,
  // stage_channels(stage), side, side) with side = stage_map_side(H, stage); stage 4 is feature_map.
  // What part-level probing pools inside each part (ssl/eval/part_probe.h).
  Tensor stage_map(const Tensor& x, int stage);
  int64_t stage_channels(int stage) const;  // feature_dim() / 2^(4 - stage)
  // ceil(input_side / stage_stride(stage)): each stride-2 layer rounds up.
  int64_t stage_map_side(int64_t input_side, int stage) const;
  // Input pixels per cell of stage_map: 4 after the ImageNet stem (conv and max-pool), 1 after the
  // small stem, doubled by each of layer2 .. layer`stage`.
  int64_t stage_stride(int stage) const;
  // The pooled features before the head: (N, feature_dim()).
  Tensor features(const Tensor& x);
  // The rest of forward after feature_map: pool and head, (N, num_classes); forward(x) is
  // head(feature_map(x)), so a caller that needs both runs the trunk once.
  Tensor head(const Tensor& feature_map);
  // The side of feature_map's output for a square input of `input_side` pixels (7 at 224).
  int64_t feature_map_side(int64_t input_side) const { return stage_map_side(input_side, 4); }
  int64_t feature_dim() const { return feature_dim_; }
  // Swaps the classifier `fc` for another module taking (N, feature_dim()) (MoCo's MLP head);
  // its parameters then appear under "fc." as in the reference.
  void replace_head(std::shared_ptr<Module> head);
  const ResNetConfig& config() const { return config_; }
  // Mixed precision (engine/precision.h): with bf16 activations the images are cast to bf16 in
  // `format` before the stem, every layer of the trunk keeps that dtype and layout, and the pooled
  // features are cast back to f32 for the head; parameters stay f32 (each convolution casts its
  // weight). The default, f32 with no format, runs the input as it comes (f64 included).
  void set_activations(const ActivationFormat& activations);

 private:
  ResNetConfig config_;
  ActivationFormat activations_;
  int64_t feature_dim_ = 0;
};

// The architectures `moco` accepts, for messages and --help.
const std::vector<std::string>& resnet_arch_names();
// The width of the pooled features (the head's input) of a ResNet built from `config`, without
// building it: 8 x width, times 4 for the Bottleneck of ResNet-50 (2048 at torchvision's width).
int64_t resnet_feature_dim(const ResNetConfig& config);
// Builds the model with the engine's initialisation from `seed`, on the CPU.
std::shared_ptr<ResNet> make_resnet(const ResNetConfig& config, uint64_t seed);

}  // namespace engine::nn
