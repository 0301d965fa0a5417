// masking.cpp - see masking.h. Shape letters: N images, n_h hard negatives per image, G the grid.
#include "ssl/masking/masking.h"

#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/log.h"
#include "ops/gaussian_filter.h"
#include "ops/saliency_mask.h"
#include "ssl/run/resnet_file.h"

namespace engine::ssl {

namespace {

constexpr int kStrongBlurTaps = 31;  // METHOD.md 3.2
constexpr double kStrongBlurSigma = 10.0;
constexpr uint64_t kHardNegativeStreamOffset = 8;  // after the query's kSaliencyMaskStreams

MaskFill fill_of(MaskStrategy strategy) {
  switch (strategy) {
    case MaskStrategy::Blur: return MaskFill::Blur;
    case MaskStrategy::Mean: return MaskFill::Mean;
    default: return MaskFill::Noise;
  }
}

// Each image's n_h copies, consecutive: rows (N, ...) -> (N * n_h, ...), row i * n_h + j = row i.
Tensor repeat_rows(const Tensor& x, int64_t copies) {
  if (copies == 1) return x.contiguous();
  Shape shape = x.shape();
  Shape expanded = shape;
  expanded.insert(expanded.begin() + 1, copies);
  Tensor out = Tensor::empty(expanded, x.dtype(), x.device());
  Shape slot = shape;  // one copy's place, (N, 1, ...)
  slot.insert(slot.begin() + 1, 1);
  const Tensor source = x.contiguous().view(slot);
  for (int64_t j = 0; j < copies; ++j) out.slice(1, j, j + 1).copy_(source);
  shape[0] *= copies;
  return out.view(shape);
}

}  // namespace

MaskStrategy parse_mask_strategy(const std::string& name) {
  if (name == "none") return MaskStrategy::None;
  if (name == "hp") return MaskStrategy::Hp;
  if (name == "blur") return MaskStrategy::Blur;
  if (name == "mean") return MaskStrategy::Mean;
  ENGINE_THROW("--strategy: expected none, hp, blur or mean, found '{}'", name);
}

const char* mask_strategy_name(MaskStrategy strategy) {
  switch (strategy) {
    case MaskStrategy::Hp: return "hp";
    case MaskStrategy::Blur: return "blur";
    case MaskStrategy::Mean: return "mean";
    default: return "none";
  }
}

SaliencySource parse_saliency_source(const std::string& text) {
  if (text == "momentum") return {SaliencySourceKind::Momentum, ""};
  if (text == "online") return {SaliencySourceKind::Online, ""};
  if (text == "none") return {SaliencySourceKind::None, ""};
  const std::string prefix = "pretrained:";
  if (text.rfind(prefix, 0) == 0 && text.size() > prefix.size())
    return {SaliencySourceKind::Pretrained, text.substr(prefix.size())};
  ENGINE_THROW("--saliency: expected momentum (MoCo), online (SimCLR), none or pretrained:FILE (a safetensors ResNet), "
               "found '{}'",
               text);
}

std::string saliency_source_text(const SaliencySource& source) {
  switch (source.kind) {
    case SaliencySourceKind::Online: return "online";
    case SaliencySourceKind::Own: return "own";
    case SaliencySourceKind::Pretrained: return "pretrained:" + source.file;
    case SaliencySourceKind::None: return "none";
    default: return "momentum";
  }
}

std::shared_ptr<nn::ResNet> load_localizer(const std::string& path, Device device) {
  auto model = load_resnet_file(path, device, "--saliency pretrained:");
  log_info("saliency: {} localizer ({} stem, width {}) from {}, frozen, eval mode", model->config().arch,
             model->config().stem == nn::ResNetStem::SmallImage ? "small-image" : "ImageNet", model->config().width,
             path);
  return model;
}

SaliencyGuidedMasking::SaliencyGuidedMasking(const MaskingConfig& config, Device device)
    : config_(config), device_(device) {
  ENGINE_CHECK(config.strategy != MaskStrategy::None || config.num_nonsem == 0,
               "--num-nonsem {} asks for hard negatives, which are masked copies of the key view: choose a masking "
               "--strategy (hp, blur or mean)",
               config.num_nonsem);
  ENGINE_CHECK(config.num_nonsem >= 0, "--num-nonsem must be >= 0, found {}", config.num_nonsem);
  if (config.saliency.kind == SaliencySourceKind::Pretrained) localizer_ = load_localizer(config.saliency.file, device);
}

Tensor SaliencyGuidedMasking::encoder_input(const Tensor& view) const {
  if (config_.strategy != MaskStrategy::Hp) return view;
  NoGradGuard no_grad;
  return high_pass(view);  // METHOD.md 3.1: kernel 11, sigma 5
}

Tensor SaliencyGuidedMasking::saliency_of(const Tensor& view, const Tensor& input, nn::ResNet& saliency_encoder) const {
  NoGradGuard no_grad;
  if (localizer_) return saliency_maps(localizer_->feature_map(view));  // (N, G, G)
  return saliency_maps(saliency_encoder.feature_map(input));
}

Tensor SaliencyGuidedMasking::foreground_of(const Tensor& maps, int64_t N, int64_t side,
                                            const nn::ResNet& saliency_encoder) const {
  // The grid is the map's; without saliency, the encoder's final feature map's.
  const int64_t grid = maps.defined() ? maps.size(1) : saliency_encoder.feature_map_side(side);
  ENGINE_CHECK(grid >= 2 && grid <= kSaliencyMaskMaxGrid,
               "masking: the final feature map is {}x{} for {}-pixel views, but masking needs a grid of 2 to {} cells "
               "a side; choose an --image-size (or a localizer) whose final feature map is in that range",
               grid, grid, side, kSaliencyMaskMaxGrid);
  if (!maps.defined()) return Tensor::ones({N, grid, grid}, DType::u8, device_);  // every cell foreground
  const ForegroundRule rule = config_.reference_quirks ? ForegroundRule::RowSortedQuirk : ForegroundRule::Threshold;
  return foreground_cells(maps, rule);  // on the maps' device
}

MaskedBatch SaliencyGuidedMasking::mask(const Tensor& query_view, const Tensor& key_view, const Tensor& query_input,
                                        const Tensor& key_input, const Tensor& key_saliency, nn::ResNet& saliency_encoder,
                                        int64_t step, const Tensor& step_number) const {
  NoGradGuard no_grad;
  ENGINE_CHECK(config_.strategy != MaskStrategy::None, "masking: called with --strategy none");
  const int64_t N = query_view.size(0), side = query_view.size(2), n_h = config_.num_nonsem;
  ENGINE_CHECK(N % config_.bn_groups == 0, "masking: the batch of {} does not split into {} groups", N,
               config_.bn_groups);
  MaskedBatch out;
  out.key = key_input;
  out.high_passed = config_.strategy == MaskStrategy::Hp;

  // Saliency of both views (METHOD.md 4), then the foreground cells (4.3), all on the views' device.
  if (config_.saliency.kind != SaliencySourceKind::None) {
    out.saliency_query = saliency_of(query_view, query_input, saliency_encoder);
    out.saliency_key = key_saliency.defined() ? key_saliency : saliency_of(key_view, key_input, saliency_encoder);
  }
  out.fg_query = foreground_of(out.saliency_query, N, side, saliency_encoder);
  out.fg_key = foreground_of(out.saliency_key, N, side, saliency_encoder);
  const int64_t grid = out.fg_query.size(1);

  SaliencyMaskOptions options;
  options.fill = fill_of(config_.strategy);
  options.seed = config_.seed;
  options.reference_quirks = config_.reference_quirks;

  // The query: pos mode with q's foreground; blur fills from the strongly blurred q.
  options.mode = MaskMode::Positive;
  // The streams of step s start at kMaskStreamBase + 16 s, s read on the device.
  options.stream = kMaskStreamBase;
  options.stream_offset = step_number.defined()
                              ? step_number
                              : Tensor::full({1}, static_cast<double>(step), DType::i64, query_input.device());
  options.stream_offset_scale = kMaskStreamsPerStep;
  options.images_per_group = N / config_.bn_groups;
  options.first_image = config_.rank * N;
  const Tensor query_blurred = options.fill == MaskFill::Blur ? gaussian_blur(query_view, kStrongBlurTaps, kStrongBlurSigma)
                                                              : Tensor();
  const SaliencyMaskResult q = saliency_mask(query_input, out.fg_query, query_blurred, options);
  out.query = q.masked;
  out.mask_query = q.cells;
  out.focal_query = q.focal;
  if (n_h == 0) return out;

  // The hard negatives: n_h copies of the key input per image, neg mode with k's foreground.
  options.mode = MaskMode::Negative;
  options.stream += kHardNegativeStreamOffset;
  options.images_per_group = N * n_h / config_.bn_groups;
  options.first_image = config_.rank * N * n_h;
  const Tensor key_blurred = options.fill == MaskFill::Blur
                                 ? repeat_rows(gaussian_blur(key_view, kStrongBlurTaps, kStrongBlurSigma), n_h)
                                 : Tensor();
  const SaliencyMaskResult h = saliency_mask(repeat_rows(key_input, n_h), repeat_rows(out.fg_key, n_h), key_blurred,
                                             options);
  out.hard_negative = h.masked.view({N, n_h, 3, side, key_input.size(3)});
  out.mask_hard_negative = h.cells.view({N, n_h, 3, grid, grid});
  out.focal_hard_negative = h.focal.view({N, n_h});
  return out;
}

}  // namespace engine::ssl
