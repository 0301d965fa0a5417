// mask_preview.h - one batch through the saliency-guided masking outside training (ssl/masking/masking.h):
// what `moco masks` draws and `moco batch --strategy` writes.
//
// The batch is batch 0 of epoch `epoch` as the trainer's loader makes it with MoCo v2's aug-plus
// augmentation (two views, normalised). The saliency encoder, whose layer4 maps are the method's
// own saliency (momentum or online; its grid also sets the cells for the `none` source), is
// either that of a `moco pretrain` checkpoint (MoCo's encoder_k, SimCLR's encoder), built with the
// checkpoint's own model flags, or a freshly initialised encoder of --arch from the seed (what f_k
// is at step 0 of a MoCo run). It runs in training mode with one BatchNorm group, as in a
// training step without virtual GPUs. The masks are those of step 0 of a run with this seed.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_folder.h"
#include "data/loader.h"
#include "layers/resnet.h"
#include "ssl/masking/masking.h"

namespace moco_cli {

struct MaskPreviewOptions {
  // The batch.
  std::string data, split = "train";
  int n = 8, size = 224, workers = 2;
  uint64_t seed = 0;  // the data, a fresh encoder's initialisation and the masks
  int64_t epoch = 0;
  bool shuffle = true, fast_decode = false;
  // The masking.
  std::string strategy = "hp";         // hp, blur or mean
  std::string saliency = "momentum";   // momentum, pretrained:FILE or none
  int64_t num_nonsem = 1;
  bool reference_quirks = false;
  // The key encoder.
  std::string checkpoint;              // a `moco pretrain` checkpoint, or "" for a fresh encoder
  std::string arch = "resnet50";       // without a checkpoint
  bool small_stem = false;             // without a checkpoint
  std::string device = "cpu";          // auto, cpu, cuda or cuda:N
};

struct MaskPreview {
  std::shared_ptr<engine::data::ImageFolder> dataset;
  engine::data::Batch batch;         // views[0]: the query view, views[1]: the key view (N, 3, S, S)
  engine::ssl::MaskedBatch masked;   // SaliencyGuidedMasking::mask of the two views
  std::string key_encoder;           // where f_k came from, for messages
};

// Throws engine::Error with a clear message for a missing folder, a batch larger than the split,
// a strategy of none, or a checkpoint file that is missing or not a `moco pretrain` checkpoint.
MaskPreview make_mask_preview(const MaskPreviewOptions& options);

// The flags that choose the masking and the key encoder (--strategy, --saliency, --num-nonsem,
// --reference-quirks, --checkpoint, -a, --small-stem, --device), shared by `moco masks` and
// `moco batch`; the values in `options` are the defaults. Returns them, so a command can ask
// which were given.
std::vector<CLI::Option*> add_masking_flags(CLI::App& cmd, MaskPreviewOptions& options);

}  // namespace moco_cli
