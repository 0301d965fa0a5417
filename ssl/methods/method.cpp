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

const char* method_name(Method method) {
  switch (method) {
    case Method::SimClr: return "simclr";
    case Method::Supervised: return "supervised";
    case Method::MocoV2: break;
  }
  return "mocov2";
}

const char* online_prefix(Method method) { return method == Method::MocoV2 ? "encoder_q." : "encoder."; }

const char* online_encoder_description(Method method) {
  switch (method) {
    case Method::SimClr: return "SimCLR's encoder";
    case Method::Supervised: return "the supervised classifier";
    case Method::MocoV2: break;
  }
  return "encoder_q";
}

Method method_from_name(const std::string& name) {
  for (const Method method : {Method::MocoV2, Method::SimClr, Method::Supervised})
    if (name == method_name(method)) return method;
  ENGINE_THROW("--method: expected mocov2, simclr or supervised, found '{}'", name.substr(0, 60));
}

void check_batch_views(const TrainingBatch& batch, size_t views, const char* who) {
  ENGINE_CHECK(batch.views.size() == views,
               "{}: a training batch must carry {} view(s) of each image, found {}; make the loader's views the "
               "method's views_per_image()",
               who, views, batch.views.size());
  for (const Tensor& view : batch.views)
    ENGINE_CHECK(view.defined() && view.dim() == 4 && view.shape() == batch.views[0].shape(),
                 "{}: the views must be (N, 3, H, W) batches of one shape, found {} and {}", who, view.str(),
                 batch.views[0].str());
}

}  // namespace engine::ssl
