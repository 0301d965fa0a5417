// method.cpp - see method.h.
#include "ssl/methods/method.h"

#include "engine/check.h"
#include "layers/layers.h"

namespace engine::ssl {

namespace {
constexpr uint64_t kHeadStream = 0x4D4C5000;  // "MLP": the extra head layer's initialisation
}  // namespace

std::shared_ptr<nn::ResNet> make_encoder(const EncoderShape& shape, uint64_t seed) {
  nn::ResNetConfig rc;
  rc.arch = shape.arch;
  rc.num_classes = shape.dim;
  rc.stem = shape.small_stem ? nn::ResNetStem::SmallImage : nn::ResNetStem::ImageNet;
  rc.width = shape.width;
  auto encoder = nn::make_resnet(rc, seed);  // fc = Linear(F, dim), torchvision's initialisation
  if (shape.mlp) {
    // As MoCo's reference: a new Linear(F, F) and ReLU in front of the original fc.
    const int64_t F = encoder->feature_dim();
    Generator gen(seed, kHeadStream);
    encoder->replace_head(std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(F, F, gen), std::make_shared<nn::ReLU>(), encoder->child_ptr("fc")}));
  }
  return encoder;
}

const char* method_name(Method method) { return method == Method::SimClr ? "simclr" : "mocov2"; }

const char* online_prefix(Method method) { return method == Method::SimClr ? "encoder." : "encoder_q."; }

Method method_from_name(const std::string& name) {
  if (name == "mocov2") return Method::MocoV2;
  if (name == "simclr") return Method::SimClr;
  ENGINE_THROW("--method: expected mocov2 or simclr, found '{}'", name.substr(0, 60));
}

}  // namespace engine::ssl
