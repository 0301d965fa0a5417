// embedding.cpp - see embedding.h.
#include "ssl/eval/embedding.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <mutex>

#include "data/codec.h"
#include "data/sample_rng.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/log.h"
#include "engine/parallel_for.h"
#include "ops/l2_normalize.h"
#include "ssl/eval/features.h"
#include "ssl/masking/masking.h"
#include "ssl/run/checkpoint.h"
#include "ssl/run/resnet_file.h"

namespace engine::ssl {

EmbeddingOutput parse_embedding_output(const std::string& text) {
  if (text == "features") return EmbeddingOutput::Features;
  if (text == "projection") return EmbeddingOutput::Projection;
  ENGINE_THROW("--output: expected features (the pooled backbone features) or projection (the pretraining head's "
               "output), found '{}'", text.substr(0, 60));
}

const char* embedding_output_name(EmbeddingOutput output) {
  return output == EmbeddingOutput::Projection ? "projection" : "features";
}

namespace {

// The online encoder of a pretraining checkpoint with its projection head, frozen. The returned
// pointer shares ownership of the method that holds the encoder.
Backbone load_with_head(const BackboneSpec& spec, Device device) {
  const std::string& path = spec.pretrained;
  bool checkpoint = false;
  if (path != kRandomBackbone) {
    const SafetensorsFile file = read_resnet_file(path, "--pretrained ");
    checkpoint = file.metadata.count("format") && file.metadata.at("format") == kCheckpointFormat;
  }
  ENGINE_CHECK(checkpoint, "--output projection applies the pretraining's projection head, which only a `moco "
               "pretrain` checkpoint holds; '{}' is not one: embed its pooled features (--output features)", path);
  PretrainedRun run = load_pretrained(path, device);
  ENGINE_CHECK(run.method->method() != Method::Supervised,
               "--output projection applies a pretraining's projection head; '{}' is a `moco supervised` checkpoint, "
               "whose head is its classifier (class scores, not an embedding): embed its pooled features "
               "(--output features)",
               path);
  nn::ResNet& encoder = run.method->online_encoder();
  freeze(encoder);
  Backbone out;
  out.net = std::shared_ptr<nn::ResNet>(run.method, &encoder);
  out.trained_on_high_pass = run.strategy == MaskStrategy::Hp;
  out.image_size = checkpoint_args(run.metadata, path).image_size;
  out.description = fmt::format("{} ({} with its projection head, step {})", path,
                                online_encoder_description(run.method->method()),
                                run.metadata.count("step") ? run.metadata.at("step") : "?");
  return out;
}

// The evaluation view of an image in memory (`name` in messages), CHW floats into `out`.
void render_eval_view(const data::Image& image, const std::string& name, const data::AugmentConfig& transform,
                      float* out) {
  data::check_view_fits(transform, image.width, image.height, name);
  data::SampleRng rng(0, 0, 0);  // the evaluation transform draws nothing
  data::render_view(image, data::sample_view(transform, image.width, image.height, rng), transform, 1, out);
}

// One batch of files decoded: the views of the readable ones, in order, and why the others failed.
struct DecodedBatch {
  Tensor views;                       // (ok, 3, S, S) f32 on the host
  std::vector<int64_t> ok;            // indices into the batch's paths
  std::vector<SkippedImage> skipped;  // in path order
};

DecodedBatch decode_batch(std::span<const std::string> paths, const data::AugmentConfig& transform, int workers) {
  const int64_t n = static_cast<int64_t>(paths.size());
  const int64_t side = transform.size;
  const int64_t view_floats = 3 * side * side;
  Tensor all = Tensor::empty({n, 3, side, side});
  std::vector<std::string> errors(paths.size());
  float* base = all.data<float>();
  parallel_for(n, workers, [&](int64_t i) {
    const std::string& path = paths[static_cast<size_t>(i)];
    std::string& error = errors[static_cast<size_t>(i)];
    try {
      data::SampleRng rng(0, 0, 0);  // the evaluation transform draws nothing
      float* const out[1] = {base + i * view_floats};
      data::make_views(data::read_file_bytes(path), path, transform, 1, /*fast_decode=*/false, rng, out);
    } catch (const data::DecodeError& e) {  // its message names the file
      error = e.what();
    } catch (const std::exception& e) {  // out of memory, a transform refusing a degenerate image
      error = fmt::format("{}: {}", path, e.what());
    }
  });
  DecodedBatch out;
  for (int64_t i = 0; i < n; ++i) {
    if (errors[static_cast<size_t>(i)].empty()) {
      out.ok.push_back(i);
    } else {
      out.skipped.push_back({paths[static_cast<size_t>(i)], errors[static_cast<size_t>(i)]});
    }
  }
  if (static_cast<int64_t>(out.ok.size()) == n) {
    out.views = all;
    return out;
  }
  out.views = Tensor::empty({static_cast<int64_t>(out.ok.size()), 3, side, side});
  for (size_t j = 0; j < out.ok.size(); ++j)
    std::memcpy(out.views.data<float>() + static_cast<int64_t>(j) * view_floats, base + out.ok[j] * view_floats,
                static_cast<size_t>(view_floats) * sizeof(float));
  return out;
}

}  // namespace

Embedder::Embedder(const EmbedderOptions& options) : options_(options) {
  ENGINE_CHECK(options.batch_size >= 1, "-b/--batch-size: expected at least 1 image per forward, found {}",
               options.batch_size);
  ENGINE_CHECK(options.workers >= 1, "-j/--workers: expected at least 1 decoding thread, found {}", options.workers);
  if (options.precision != Precision::fp32) use_precision(options.precision, options.device);  // refuses tf32 on a CPU
  const Backbone backbone = options.output == EmbeddingOutput::Projection
                                ? load_with_head(options.backbone, options.device)
                                : load_backbone(options.backbone, options.device);
  net_ = backbone.net;
  net_->set_activations(activation_format(options.precision, options.device));  // features f32 either way
  description_ = backbone.description;
  high_pass_ = evaluation_high_pass(options.high_pass, backbone);
  const int64_t size = evaluation_image_size(options.image_size, backbone);
  ENGINE_CHECK(size >= 8 && size <= 4096, "--image-size: expected a crop side of 8 to 4096 pixels, found {}", size);
  transform_ = data::eval_transform(static_cast<int>(size));
  dim_ = net_->feature_dim();
  if (options.output == EmbeddingOutput::Projection) {
    // The head's last layer is the last entry of the state dict (fc.bias, or fc.2.bias for an MLP).
    const NamedTensors state = net_->state_dict();
    ENGINE_CHECK(!state.empty() && state.back().first.rfind("fc.", 0) == 0 && state.back().second.dim() == 1,
                 "{}: the encoder's head does not end in a bias vector (fc.*.bias); cannot tell its width",
                 options.backbone.pretrained);
    dim_ = state.back().second.size(0);
  }
}

std::string Embedder::preprocessing_text() const {
  const data::Normalization& n = transform_.norm;
  return fmt::format("Resize({}) CenterCrop({}) ToTensor Normalize(mean=[{}, {}, {}], std=[{}, {}, {}]){}",
                     transform_.resize_size, transform_.size, n.mean[0], n.mean[1], n.mean[2], n.std[0], n.std[1],
                     n.std[2], high_pass_ ? " HighPass(kernel 11, sigma 5)" : "");
}

namespace {

std::mutex& device_mutex(const Device& device) {
  static std::mutex cpu, cuda[64];
  return device.is_cuda() ? cuda[device.index % 64] : cpu;
}

}  // namespace

Tensor Embedder::embed_views(const Tensor& views) const {
  // One forward at a time per device in this process: the encoders on a GPU share its stream and
  // its cuBLAS and cuDNN handles (which are not for concurrent use), and the math mode is a
  // setting of the device, which each embedder sets to its own for its forward.
  const std::lock_guard lock(device_mutex(options_.device));
  use_precision(options_.precision, options_.device);
  NoGradGuard no_grad;
  const Tensor x = backbone_input(views.to(options_.device), high_pass_);  // (n, 3, S, S)
  Tensor y = options_.output == EmbeddingOutput::Projection ? net_->forward(x) : net_->features(x);  // (n, D)
  if (options_.normalize) y = l2_normalize(y);
  return y.to(DType::f32).to(Device::cpu()).contiguous();
}

Tensor Embedder::embed_images(std::span<const data::Image> images) const {
  const int64_t n = static_cast<int64_t>(images.size());
  const int64_t side = transform_.size;
  for (int64_t i = 0; i < n; ++i) {
    const data::Image& im = images[static_cast<size_t>(i)];
    ENGINE_CHECK(im.channels == 3 && im.width > 0 && im.height > 0 &&
                     im.pixels.size() == static_cast<size_t>(im.width) * im.height * 3,
                 "image {}: expected RGB pixels (3 channels, width x height x 3 bytes), found {} x {} with {} "
                 "channels and {} bytes",
                 i, im.width, im.height, im.channels, im.pixels.size());
  }
  Tensor out = Tensor::empty({n, dim_});
  for (int64_t start = 0; start < n; start += options_.batch_size) {
    const int64_t count = std::min(options_.batch_size, n - start);
    Tensor views = Tensor::empty({count, 3, side, side});
    float* base = views.data<float>();
    parallel_for(count, options_.workers, [&](int64_t i) {
      render_eval_view(images[static_cast<size_t>(start + i)], fmt::format("image {}", start + i), transform_,
                       base + i * 3 * side * side);
    });
    const Tensor rows = embed_views(views);
    std::memcpy(out.data<float>() + start * dim_, rows.data<float>(), static_cast<size_t>(count * dim_) * sizeof(float));
  }
  return out;
}

FileEmbeddings Embedder::embed_files(const std::vector<std::string>& paths, const EmbedProgress& progress) const {
  const int64_t total = static_cast<int64_t>(paths.size());
  const int64_t batch = options_.batch_size;
  auto decode = [this, &paths, total, batch](int64_t start) {
    const int64_t count = std::min(batch, total - start);
    return decode_batch(std::span<const std::string>(paths).subspan(static_cast<size_t>(start), static_cast<size_t>(count)),
                        transform_, options_.workers);
  };
  FileEmbeddings out;
  std::vector<float> rows;
  std::future<DecodedBatch> next;
  if (total > 0) next = std::async(std::launch::async, decode, 0);
  for (int64_t start = 0; start < total; start += batch) {
    DecodedBatch decoded = next.get();
    // The next batch decodes while the network runs this one.
    if (start + batch < total) next = std::async(std::launch::async, decode, start + batch);
    for (const SkippedImage& s : decoded.skipped) log_warning("embed: skipped {}", s.reason);
    out.skipped.insert(out.skipped.end(), decoded.skipped.begin(), decoded.skipped.end());
    if (!decoded.ok.empty()) {
      const Tensor e = embed_views(decoded.views);  // (ok, D)
      rows.insert(rows.end(), e.data<float>(), e.data<float>() + e.numel());
      for (int64_t i : decoded.ok) out.paths.push_back(paths[static_cast<size_t>(start + i)]);
    }
    if (progress) progress(std::min(start + batch, total), total);
  }
  out.embeddings = Tensor::from_vector(rows, {static_cast<int64_t>(out.paths.size()), dim_});
  return out;
}

}  // namespace engine::ssl
