// part_probe.h - object-level and part-level linear probes of a frozen encoder: how well its
// features name the object, and how well they name each of the object's parts (METHOD.md section
// 9.3). Part-aware representation studies find that supervised pretraining wins the first and
// contrastive pretraining the second; this measures both on any backbone (ssl/eval/backbone.h).
//
//   features  the map of one stage (`stage`: 3 = layer3, 4 = layer4) of the backbone in eval mode,
//             on the evaluation view (Resize + CenterCrop, high-passed for hp backbones), without
//             gradients: (N, C, g, g)
//   object    per image, the map averaged over all g x g cells (N, C); label: the image's class
//   part      per part of an image, the map averaged over the cells the part covers, each cell
//             weighted by the part's share of its pixels (ops region_avgpool; the mask follows the
//             view's geometry, data/part_masks.h); label: the part type (class, part id) of the
//             dataset's masks/parts.txt. A part whose area is under `min_part_cells` cells (sum of
//             its shares; 0.5 = half a cell) is too small for the stage's resolution: its feature
//             would be its neighbours', so it is skipped and counted (tiny_parts)
//   probe     for each level, one linear classifier on the training split's features, standardised
//             by their per-dimension mean and std on train/ (so one learning rate suits any encoder
//             and stage): cross-entropy, SGD momentum 0.9, cosine learning rate per epoch, batches
//             in a fresh random order every epoch, from `seed`
//   report    top-1 on val/ (percent) per level, and each level's chance: the val/ share of the
//             training split's most frequent label (what a classifier ignoring its input reaches)
//
// The features are extracted once per split and held in memory, so the classifiers train in
// seconds; the extraction (one forward per image) is most of the time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/tensor.h"
#include "ssl/eval/backbone.h"

namespace engine::ssl {

enum class ProbeLevel { Object, Part, Both };
ProbeLevel parse_probe_level(const std::string& text);  // "object", "part", "both"
int parse_probe_stage(const std::string& text);         // "layer3" -> 3, "layer4" -> 4

struct LinearProbeOptions {
  int64_t epochs = 100;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 0.0;
  int64_t batch_size = 256;
  uint64_t seed = 0;
};

struct PartProbeConfig {
  std::string data;  // a root with train/, val/ and (for parts) masks/
  BackboneSpec backbone;
  HighPass high_pass = HighPass::Auto;
  ProbeLevel level = ProbeLevel::Both;
  int stage = 4;               // 3 or 4
  int64_t image_size = 0;      // 0: the pretraining's --image-size when the file says, else 224
  double min_part_cells = 0.5;
  int64_t batch_size = 64;     // images per forward
  int workers = 4;
  LinearProbeOptions classifier;
  Device device = Device::cpu();
};

// One level's outcome.
struct ProbeLevelResult {
  double top1 = 0, chance = 0;  // percent on val/
  int64_t train_rows = 0, val_rows = 0, classes = 0;
};

struct PartProbeResult {
  std::optional<ProbeLevelResult> object, part;  // the levels asked for
  int64_t tiny_parts = 0;     // parts skipped as smaller than min_part_cells, both splits
  int64_t grid = 0, stride = 0, channels = 0, image_size = 0;  // the stage's cells per side, view pixels per cell
  bool high_pass = false;
  std::string backbone;       // its description
};

// Throws engine::Error with a clear message for a dataset without train/ or val/, a missing
// parts table or mask (part level), a mask of another size than its image, a part id the table
// does not list for the image's class, or a stage other than 3 or 4.
PartProbeResult probe_parts(const PartProbeConfig& config);

// ---- the pieces, for tests ----

// What one split gives the probes: rows on the host, f32.
struct ProbeFeatures {
  Tensor object;                       // (N, C): pooled over the whole map
  Tensor object_labels;                // (N) i64: the class
  Tensor part;                         // (P, C): pooled inside each part (undefined without parts)
  Tensor part_labels;                  // (P) i64: the part type
  int64_t tiny_parts = 0;
  std::vector<std::string> classes;    // the split's class folders
};

// One linear classifier trained on (train, train_labels) and its top-1 on (test, test_labels), in
// percent, as the probe does it (standardised features, SGD, cosine). Rows on the host.
double linear_probe_top1(const Tensor& train, const Tensor& train_labels, const Tensor& test,
                         const Tensor& test_labels, int64_t classes, const LinearProbeOptions& options, Device device);

}  // namespace engine::ssl
