// embedding.h - a frozen encoder that turns images into vectors: what `moco embed` runs, and what
// the installed library's moco_engine::Encoder (api/) wraps, so both give the same numbers.
//
// Each image goes through the evaluation transform of the encoder's image size, exactly as kNN and
// the linear probe see it (data/augment.h eval_transform: Resize(size * 256 / 224) + CenterCrop(size),
// ToTensor, Normalize with ImageNet's mean and std), is high-passed when the encoder was pretrained
// on high-passed inputs (METHOD.md section 9), and through the network in eval mode without
// gradients. The output is, per image,
//   features     the pooled backbone features, (feature_dim): 2048 for ResNet-50 (the default);
//   projection   the pretraining head's output (MoCo v2's or SimCLR's), (dim): a checkpoint only;
// optionally L2-normalised (then a dot product is the cosine similarity).
//
// Files are decoded by `workers` threads, the next batch while the network runs the current one. A
// file that cannot be read or decoded (missing, empty, truncated, not an image) is named in the
// result's `skipped` with the reason and logged as a warning; it never stops the others.
//
// One call at a time per Embedder. Embedders may run in several threads: their forwards take turns
// on each device (the encoders of one GPU share its stream and library handles), their decoding
// does not.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/image.h"
#include "engine/precision.h"
#include "engine/tensor.h"
#include "layers/resnet.h"
#include "ssl/eval/backbone.h"

namespace engine::ssl {

enum class EmbeddingOutput { Features, Projection };
EmbeddingOutput parse_embedding_output(const std::string& text);  // "features" or "projection"
const char* embedding_output_name(EmbeddingOutput output);

struct EmbedderOptions {
  BackboneSpec backbone;  // a checkpoint, a torchvision-named ResNet file, or "random"
  EmbeddingOutput output = EmbeddingOutput::Features;
  bool normalize = false;  // L2-normalise each row
  int64_t image_size = 0;  // the crop side; 0: the checkpoint's --image-size, else 224
  HighPass high_pass = HighPass::Auto;
  int64_t batch_size = 64;  // images per forward
  int workers = 1;          // decoding threads
  Device device = Device::cpu();
  Precision precision = Precision::fp32;  // the math of its convolutions and GEMMs (tf32: a GPU only)
};

struct SkippedImage {
  std::string path;
  std::string reason;  // the decoder's message (it names the file)
};

struct FileEmbeddings {
  Tensor embeddings;               // (N, dim) f32 on the host; row i is paths[i]
  std::vector<std::string> paths;  // the embedded files, in the order given, the skipped left out
  std::vector<SkippedImage> skipped;
};

// After each batch: the files looked at so far (embedded or skipped) and how many there are.
using EmbedProgress = std::function<void(int64_t done, int64_t total)>;

class Embedder {
 public:
  // Loads the encoder. Throws engine::Error for a missing or damaged file, --output projection of a
  // file without a pretraining head, a batch size or worker count below 1, or tf32 on a CPU. For
  // the projection the whole method of the checkpoint is kept (MoCo's key encoder and queue too).
  explicit Embedder(const EmbedderOptions& options);

  int64_t dim() const { return dim_; }
  const data::AugmentConfig& transform() const { return transform_; }
  bool high_pass() const { return high_pass_; }
  const std::string& description() const { return description_; }
  const EmbedderOptions& options() const { return options_; }
  // One line for logs and file metadata: "Resize(256) CenterCrop(224) Normalize(...) [HighPass]".
  std::string preprocessing_text() const;

  // Decoded RGB images (3 channels, any size) -> (N, dim) f32 on the host.
  Tensor embed_images(std::span<const data::Image> images) const;
  // Image files -> their embeddings; the unreadable named in `skipped`.
  FileEmbeddings embed_files(const std::vector<std::string>& paths, const EmbedProgress& progress = {}) const;

 private:
  // Normalised views (n, 3, S, S) f32 on the host -> (n, dim) f32 on the host.
  Tensor embed_views(const Tensor& views) const;

  EmbedderOptions options_;
  std::shared_ptr<nn::ResNet> net_;  // frozen, on options_.device; owns (or shares) what holds it
  data::AugmentConfig transform_;
  bool high_pass_ = false;
  int64_t dim_ = 0;
  std::string description_;
};

}  // namespace engine::ssl
