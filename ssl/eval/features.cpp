// features.cpp - see features.h.
#include "ssl/eval/features.h"

#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/gaussian_filter.h"

namespace engine::ssl {

Tensor backbone_input(const Tensor& x, bool high_pass_inputs) {
  if (!high_pass_inputs) return x;
  NoGradGuard no_grad;
  return high_pass(x);  // METHOD.md 3.1: kernel 11, sigma 5, as the pretraining's encoder inputs
}

FeatureSet extract_features(nn::ResNet& backbone, std::shared_ptr<const data::ImageFolder> dataset,
                            const data::AugmentConfig& transform, const FeatureOptions& options) {
  ENGINE_CHECK(!backbone.is_training(), "extract_features: the backbone must be in eval mode (frozen statistics)");
  data::LoaderOptions lo;
  lo.batch_size = static_cast<int>(options.batch_size);
  lo.workers = options.workers;
  lo.views = 1;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.seed = options.seed;
  lo.device = options.device;
  const int64_t N = dataset->size();
  FeatureSet out;
  out.classes = static_cast<int64_t>(dataset->classes().size());
  out.features = Tensor::empty({N, backbone.feature_dim()}, DType::f32, options.device);
  out.labels = Tensor::empty({N}, DType::i64);
  data::Loader loader(std::move(dataset), transform, lo);
  loader.start_epoch(options.epoch);
  NoGradGuard no_grad;
  int64_t row = 0;
  while (auto batch = loader.next()) {
    const int64_t n = batch->size();
    const Tensor features = backbone.features(backbone_input(batch->views[0], options.high_pass));  // (n, F)
    out.features.slice(0, row, row + n).copy_(features);
    out.labels.slice(0, row, row + n).copy_(batch->labels);
    row += n;
  }
  ENGINE_CHECK(row == N, "extract_features: the loader delivered {} images of {}", row, N);
  return out;
}

}  // namespace engine::ssl
