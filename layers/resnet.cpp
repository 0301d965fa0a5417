// resnet.cpp - BasicBlock, Bottleneck and ResNet, built and named as torchvision builds them.
#include "layers/resnet.h"

#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"

namespace engine::nn {

namespace {

template <typename M, typename... Args>
std::shared_ptr<Module> make(Args&&... args) {
  return std::make_shared<M>(std::forward<Args>(args)...);
}

struct ArchSpec {
  const char* name;
  bool bottleneck;
  int64_t blocks[4];
};
constexpr ArchSpec kArchs[] = {
    {"resnet18", false, {2, 2, 2, 2}},
    {"resnet34", false, {3, 4, 6, 3}},
    {"resnet50", true, {3, 4, 6, 3}},
};

const ArchSpec& find_arch(const std::string& name) {
  for (const ArchSpec& a : kArchs)
    if (name == a.name) return a;
  ENGINE_THROW("unknown architecture '{}'; choose one of: resnet18, resnet34, resnet50", name);
}

// relu(bn(x)) and relu(bn(x) + residual) as one fused op each (ops/batchnorm2d.h: one pass over
// the activations instead of three, forward and backward). The modules run one by one when an
// output hook watches the BatchNorm or the ReLU (moco inspect records every module's output, and
// sees what it always saw) or when `bn` was replaced by another module (replace_module).
BatchNorm2d* fusable(Module& bn, const Module& relu) {
  if (bn.output_hook || relu.output_hook) return nullptr;
  return dynamic_cast<BatchNorm2d*>(&bn);
}

Tensor bn_relu(Module& bn, Module& relu, const Tensor& x) {
  if (BatchNorm2d* fused = fusable(bn, relu)) return fused->forward_relu(x);
  return relu(bn(x));
}

Tensor bn_add_relu(Module& bn, Module& relu, const Tensor& x, const Tensor& residual) {
  if (BatchNorm2d* fused = fusable(bn, relu)) return fused->forward_add_relu(x, residual);
  return relu(add(bn(x), residual));
}

}  // namespace

BasicBlock::BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
                       Generator& gen)
    : conv1_(make<Conv2d>(inplanes, planes, 3, stride, 1, gen)),
      bn1_(make<BatchNorm2d>(planes)),
      relu_(make<ReLU>()),
      conv2_(make<Conv2d>(planes, planes, 3, 1, 1, gen)),
      bn2_(make<BatchNorm2d>(planes)),
      downsample_(std::move(downsample)) {
  register_module("conv1", conv1_);
  register_module("bn1", bn1_);
  register_module("relu", relu_);
  register_module("conv2", conv2_);
  register_module("bn2", bn2_);
  if (downsample_) register_module("downsample", downsample_);
}

Tensor BasicBlock::forward(const Tensor& x) {
  const Tensor out = bn_relu(*bn1_, *relu_, (*conv1_)(x));  // (N, planes, H/stride, W/stride)
  const Tensor identity = downsample_ ? (*downsample_)(x) : x;
  return bn_add_relu(*bn2_, *relu_, (*conv2_)(out), identity);
}

Bottleneck::Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, std::shared_ptr<Module> downsample,
                       Generator& gen)
    : conv1_(make<Conv2d>(inplanes, planes, 1, 1, 0, gen)),
      bn1_(make<BatchNorm2d>(planes)),
      conv2_(make<Conv2d>(planes, planes, 3, stride, 1, gen)),
      bn2_(make<BatchNorm2d>(planes)),
      conv3_(make<Conv2d>(planes, planes * kExpansion, 1, 1, 0, gen)),
      bn3_(make<BatchNorm2d>(planes * kExpansion)),
      relu_(make<ReLU>()),
      downsample_(std::move(downsample)) {
  register_module("conv1", conv1_);
  register_module("bn1", bn1_);
  register_module("conv2", conv2_);
  register_module("bn2", bn2_);
  register_module("conv3", conv3_);
  register_module("bn3", bn3_);
  register_module("relu", relu_);
  if (downsample_) register_module("downsample", downsample_);
}

Tensor Bottleneck::forward(const Tensor& x) {
  Tensor out = bn_relu(*bn1_, *relu_, (*conv1_)(x));  // (N, planes, H, W)
  out = bn_relu(*bn2_, *relu_, (*conv2_)(out));        // (N, planes, H/stride, W/stride)
  const Tensor identity = downsample_ ? (*downsample_)(x) : x;
  return bn_add_relu(*bn3_, *relu_, (*conv3_)(out), identity);  // (N, 4 planes, H/stride, W/stride)
}

ResNet::ResNet(const ResNetConfig& config, Generator& gen) : config_(config) {
  const ArchSpec& arch = find_arch(config.arch);
  ENGINE_CHECK(config.num_classes > 0, "ResNet: num_classes must be positive, found {}", config.num_classes);
  ENGINE_CHECK(config.width >= 1 && config.width <= 4096, "ResNet: width (the stem's channels) must be in 1..4096, found {}",
               config.width);
  const int64_t w = config.width;
  const int64_t expansion = arch.bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion;
  if (config.stem == ResNetStem::ImageNet)
    register_module("conv1", make<Conv2d>(3, w, 7, 2, 3, gen));
  else
    register_module("conv1", make<Conv2d>(3, w, 3, 1, 1, gen));
  register_module("bn1", make<BatchNorm2d>(w));
  register_module("relu", make<ReLU>());
  if (config.stem == ResNetStem::ImageNet) register_module("maxpool", make<MaxPool2d>(3, 2, 1));

  int64_t inplanes = w;
  const int64_t widths[4] = {w, 2 * w, 4 * w, 8 * w}, strides[4] = {1, 2, 2, 2};
  for (int stage = 0; stage < 4; ++stage) {
    auto layer = std::make_shared<Sequential>();
    const int64_t planes = widths[stage];
    for (int64_t b = 0; b < arch.blocks[stage]; ++b) {
      const int64_t stride = b == 0 ? strides[stage] : 1;
      std::shared_ptr<Module> downsample;
      if (b == 0 && (stride != 1 || inplanes != planes * expansion))
        downsample = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
            make<Conv2d>(inplanes, planes * expansion, 1, stride, 0, gen), make<BatchNorm2d>(planes * expansion)});
      if (arch.bottleneck)
        layer->append(make<Bottleneck>(inplanes, planes, stride, downsample, gen));
      else
        layer->append(make<BasicBlock>(inplanes, planes, stride, downsample, gen));
      inplanes = planes * expansion;
    }
    register_module("layer" + std::to_string(stage + 1), layer);
  }
  feature_dim_ = inplanes;  // = resnet_feature_dim(config)
  register_module("avgpool", make<GlobalAvgPool2d>());
  register_module("fc", make<Linear>(feature_dim_, config.num_classes, gen));
}

Tensor ResNet::feature_map(const Tensor& x) { return stage_map(x, 4); }

namespace {
void check_stage(int stage) {
  ENGINE_CHECK(stage >= 1 && stage <= 4, "ResNet: stages are 1 to 4 (layer1 to layer4), found {}", stage);
}
}  // namespace

Tensor ResNet::stage_map(const Tensor& x, int stage) {
  ENGINE_CHECK(x.dim() == 4 && x.size(1) == 3, "ResNet: expected images (N, 3, H, W), found {}", x.str());
  check_stage(stage);
  const Tensor input = activations_.format ? x.to(activations_.dtype, *activations_.format) : x;  // (N, 3, H, W)
  Tensor h = bn_relu(child("bn1"), child("relu"), child("conv1")(input));  // (N, width, H/2, W/2), or (N, width, H, W) small stem
  if (config_.stem == ResNetStem::ImageNet) h = child("maxpool")(h);  // (N, width, H/4, W/4)
  for (int k = 1; k <= stage; ++k) h = child(fmt::format("layer{}", k))(h);
  return h;  // stage 4: (N, feature_dim, H/32, W/32), or H/8 with the small stem; each stage before halves less
}

void ResNet::set_activations(const ActivationFormat& activations) {
  ENGINE_CHECK(activations.dtype == DType::bf16 ? activations.format.has_value()
                                                : activations.dtype == DType::f32 && !activations.format,
               "ResNet::set_activations: expected bf16 with a memory format, or f32 with none (the input's own), "
               "found {}{}", dtype_name(activations.dtype), activations.format ? " with a format" : " without a format");
  activations_ = activations;
}

int64_t ResNet::stage_channels(int stage) const {
  check_stage(stage);
  return feature_dim_ >> (4 - stage);
}

namespace {
// The pooled features, f32 whatever the trunk's activations: the head and every consumer of
// features() (kNN, the linear probe, embeddings) work in f32.
Tensor pool(Module& avgpool, const Tensor& feature_map) {
  Tensor h = avgpool(feature_map);        // (N, feature_dim, 1, 1)
  h = h.view({h.size(0), h.size(1)});     // (N, feature_dim)
  return h.dtype() == DType::bf16 ? h.to(DType::f32) : h;
}
}  // namespace

Tensor ResNet::features(const Tensor& x) { return pool(child("avgpool"), feature_map(x)); }

Tensor ResNet::head(const Tensor& feature_map) { return child("fc")(pool(child("avgpool"), feature_map)); }

Tensor ResNet::forward(const Tensor& x) { return head(feature_map(x)); }  // (N, num_classes)

int64_t ResNet::stage_stride(int stage) const {
  check_stage(stage);
  return (config_.stem == ResNetStem::ImageNet ? 4 : 1) << (stage - 1);
}

int64_t ResNet::stage_map_side(int64_t input_side, int stage) const {
  // Each stride-2 layer (3x3 or 7x7 conv, or the max-pool, with "same" padding) makes ceil(n / 2),
  // and ceil(ceil(n / 2) / 2) = ceil(n / 4): the side is ceil(input / stride).
  const int64_t stride = stage_stride(stage);
  return (input_side + stride - 1) / stride;
}

void ResNet::replace_head(std::shared_ptr<Module> head) { replace_module("fc", std::move(head)); }

const std::vector<std::string>& resnet_arch_names() {
  static const std::vector<std::string> names = {"resnet18", "resnet34", "resnet50"};
  return names;
}

int64_t resnet_feature_dim(const ResNetConfig& config) {
  return 8 * config.width * (find_arch(config.arch).bottleneck ? Bottleneck::kExpansion : BasicBlock::kExpansion);
}

std::shared_ptr<ResNet> make_resnet(const ResNetConfig& config, uint64_t seed) {
  Generator gen(seed, /*stream=*/0x5E5E7);
  return std::make_shared<ResNet>(config, gen);
}

}  // namespace engine::nn
