// encoder.cpp - moco_engine::Encoder (moco_engine/encoder.h): the public face of
// engine::ssl::Embedder, the code `moco embed` runs, translated to and from plain C++ types.
#include "moco_engine/encoder.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "api/library_guard.h"
#include "data/image_list.h"
#include "engine/check.h"
#include "engine/precision.h"
#include "ssl/eval/embedding.h"

namespace moco_engine {

struct Encoder::Impl {
  std::unique_ptr<engine::ssl::Embedder> embedder;
};

namespace {

engine::ssl::EmbedderOptions embedder_options(const std::string& weights, const EncoderOptions& o) {
  engine::ssl::EmbedderOptions e;
  e.backbone.pretrained = weights;
  ENGINE_CHECK(weights != engine::ssl::kRandomBackbone,
               "Encoder: '{}' names no weights; give a `moco pretrain` checkpoint or a torchvision-named ResNet "
               "safetensors file", weights);
  e.output = o.output == Output::Projection ? engine::ssl::EmbeddingOutput::Projection
                                            : engine::ssl::EmbeddingOutput::Features;
  e.normalize = o.normalize;
  e.image_size = o.image_size;
  e.high_pass = o.high_pass == HighPass::On    ? engine::ssl::HighPass::On
                : o.high_pass == HighPass::Off ? engine::ssl::HighPass::Off
                                               : engine::ssl::HighPass::Auto;
  e.batch_size = o.batch_size;
  e.workers = o.workers > 0 ? o.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  e.device = engine::resolve_device(o.device);
  e.precision = engine::parse_precision(o.precision);
  return e;
}

}  // namespace

Encoder::Encoder(const std::string& weights, const EncoderOptions& options)
    : impl_(detail::call_library([&] {
        auto impl = std::make_unique<Impl>();
        impl->embedder = std::make_unique<engine::ssl::Embedder>(embedder_options(weights, options));
        return impl;
      })) {}

Encoder::~Encoder() = default;
Encoder::Encoder(Encoder&&) noexcept = default;
Encoder& Encoder::operator=(Encoder&&) noexcept = default;

const Encoder::Impl& Encoder::impl() const {
  if (!impl_) throw Error("moco_engine::Encoder: used after it was moved from; load another");
  return *impl_;
}

std::size_t Encoder::dimension() const {
  return detail::call_library([&] { return static_cast<std::size_t>(impl().embedder->dim()); });
}

Preprocessing Encoder::preprocessing() const {
  return detail::call_library([&] {
    const engine::ssl::Embedder& e = *impl().embedder;
    Preprocessing p;
    p.resize = e.transform().resize_size;
    p.crop = e.transform().size;
    p.mean = e.transform().norm.mean;
    p.stddev = e.transform().norm.std;
    p.high_pass = e.high_pass();
    p.text = e.preprocessing_text();
    return p;
  });
}

std::string Encoder::description() const {
  return detail::call_library([&] { return impl().embedder->description(); });
}

std::string Encoder::device() const {
  return detail::call_library([&] { return impl().embedder->options().device.str(); });
}

std::vector<float> Encoder::embed(const std::vector<RgbImage>& images) const {
  return detail::call_library([&] {
    std::vector<engine::data::Image> decoded;
    decoded.reserve(images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      const RgbImage& im = images[i];
      ENGINE_CHECK(im.pixels != nullptr && im.width > 0 && im.height > 0,
                   "Encoder::embed: image {} has no pixels ({} x {}, pixels {}); expected width x height x 3 bytes "
                   "of RGB", i, im.width, im.height, im.pixels ? "set" : "null");
      engine::data::Image copy(im.width, im.height, 3);
      std::memcpy(copy.pixels.data(), im.pixels, copy.pixels.size());
      decoded.push_back(std::move(copy));
    }
    const engine::Tensor rows = impl().embedder->embed_images(decoded);  // (N, D) f32 host
    const float* values = rows.data<float>();
    return std::vector<float>(values, values + rows.numel());
  });
}

Embeddings Encoder::embed_files(const std::vector<std::string>& paths, const Progress& progress) const {
  return detail::call_library([&] {
    engine::ssl::EmbedProgress report;
    if (progress)
      report = [&progress](int64_t done, int64_t total) {
        progress(static_cast<std::size_t>(done), static_cast<std::size_t>(total));
      };
    engine::ssl::FileEmbeddings f = impl().embedder->embed_files(paths, report);
    Embeddings out;
    out.rows = static_cast<std::size_t>(f.embeddings.size(0));
    out.dim = static_cast<std::size_t>(impl().embedder->dim());
    const float* values = f.embeddings.data<float>();
    out.values.assign(values, values + f.embeddings.numel());
    out.paths = std::move(f.paths);
    for (engine::ssl::SkippedImage& s : f.skipped) out.skipped.push_back({std::move(s.path), std::move(s.reason)});
    return out;
  });
}

std::vector<std::string> list_images(const std::string& source) {
  return detail::call_library([&] { return engine::data::list_image_files(source); });
}

}  // namespace moco_engine
