// moco_engine/encoder.h - a pretrained encoder that turns images into vectors.
//
//   moco_engine::Encoder encoder("checkpoint_0199.safetensors");          // CPU, pooled features
//   moco_engine::Embeddings e = encoder.embed_files(moco_engine::list_images("photos/"));
//   // e.rows x e.dim floats in e.values, row i for e.paths[i]; e.skipped names what failed
//
// The weights are a `moco pretrain` checkpoint (MoCo v2 or SimCLR; its online encoder), a ResNet
// saved with torchvision's names in safetensors (`moco export`, or a converted torchvision model),
// and the preprocessing is the evaluation transform the engine's kNN and linear probe use:
// Resize(crop * 256 / 224) of the shorter side (bilinear, antialiased as PIL), CenterCrop(crop),
// scale to 0-1, normalise with ImageNet's mean and std, then a high-pass filter for encoders that
// were pretrained on high-passed images. preprocessing() says exactly what is applied.
//
// One call at a time per Encoder; several Encoders may run in several threads (their network
// forwards take turns on each device, their file decoding does not).
//
// Performance on the CPU: the network runs on OpenMP threads, which by default spin for a while
// after each parallel region, against the decoding threads. Start your program with
// OMP_WAIT_POLICY=passive in its environment (libgomp reads it when it loads, before main) for
// the speed of `moco embed`, which sets it for itself.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moco_engine/library.h"

namespace moco_engine {

// What one row of the output is.
enum class Output {
  Features,    // the pooled backbone features (2048 for ResNet-50): what transfer learning uses
  Projection,  // the pretraining's projection head applied to them (128 for MoCo v2): checkpoints only
};

// Whether the inputs are high-passed before the encoder: Auto does it for encoders pretrained with
// the high-pass masking strategy, as the engine's evaluation does.
enum class HighPass { Auto, On, Off };

struct EncoderOptions {
  std::string device = "cpu";      // "cpu", "cuda", "cuda:N", or "auto" (a GPU when there is one)
  std::string precision = "fp32";  // math of the convolutions and GEMMs: "fp32", or "tf32" on a GPU
  Output output = Output::Features;
  bool normalize = false;  // L2-normalise each row (a dot product is then the cosine similarity)
  int image_size = 0;      // the crop side; 0: the checkpoint's --image-size, else 224
  HighPass high_pass = HighPass::Auto;
  int batch_size = 32;  // images per forward
  int workers = 0;      // threads that decode files and prepare images; 0: one per hardware thread
};

// The preprocessing the encoder applies to every image, in torchvision's terms.
struct Preprocessing {
  int resize = 0;  // the shorter side is resized to this
  int crop = 0;    // then the center crop-by-crop square is taken
  std::array<float, 3> mean{};    // Normalize, on values scaled to 0-1: (x - mean) / stddev
  std::array<float, 3> stddev{};
  bool high_pass = false;  // then high-pass filtered (kernel 11, sigma 5)
  std::string text;        // all of it as one line
};

// Decoded pixels that the caller owns: 8-bit RGB, interleaved, rows top to bottom with no padding
// (width * 3 bytes each).
struct RgbImage {
  const std::uint8_t* pixels = nullptr;
  int width = 0;
  int height = 0;
};

struct SkippedFile {
  std::string path;
  std::string reason;  // names the file and what is wrong with it
};

struct Embeddings {
  std::vector<float> values;       // rows x dim, row-major
  std::size_t rows = 0, dim = 0;
  std::vector<std::string> paths;  // the file of each row, in the order given
  std::vector<SkippedFile> skipped;  // files that could not be read or decoded: left out, never fatal
  const float* row(std::size_t i) const { return values.data() + i * dim; }
};

// After each batch of files: how many have been looked at, of how many.
using Progress = std::function<void(std::size_t done, std::size_t total)>;

class MOCO_ENGINE_API Encoder {
 public:
  // Loads `weights` onto the options' device. Throws Error for a missing or damaged file, a file
  // that holds no ResNet, Output::Projection of a file without a pretraining head, or a device that
  // is not there.
  explicit Encoder(const std::string& weights, const EncoderOptions& options = {});
  ~Encoder();
  Encoder(Encoder&&) noexcept;
  Encoder& operator=(Encoder&&) noexcept;
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  std::size_t dimension() const;   // the length of one embedding
  Preprocessing preprocessing() const;
  std::string description() const;  // where the weights came from, for logs
  std::string device() const;       // the device it runs on ("cpu", "cuda:0")

  // images.size() x dimension() floats, row-major. Throws Error for an image without pixels.
  std::vector<float> embed(const std::vector<RgbImage>& images) const;
  // Decodes (JPEG, PNG) and embeds the files; one that cannot be read or decoded is skipped and
  // named in the result (and reported as a warning through set_log_callback).
  Embeddings embed_files(const std::vector<std::string>& paths, const Progress& progress = {}) const;

 private:
  struct Impl;
  const Impl& impl() const;  // throws Error after a move
  std::unique_ptr<Impl> impl_;
};

// The image files named by `source`: every image below a folder (recursively, in sorted order),
// one image file, or the paths listed one per line in a text file (relative ones relative to the
// list's folder). Throws Error for a missing source or one without images.
MOCO_ENGINE_API std::vector<std::string> list_images(const std::string& source);

}  // namespace moco_engine
