// cmd_batch.cpp - `moco batch DATA --out B.safetensors`: one batch exactly as the trainer's loader
// makes it (augmented views as NCHW f32 after normalisation, labels, crop boxes), so a user can
// look at what goes into the network. --no-augment writes the decoded images resized (shorter side)
// and center-cropped to --size, without normalisation (0-255), for comparing decoders.
// --strategy hp|blur|mean writes instead what the encoders receive after the saliency-guided
// masking of that batch (tools/mask_preview.h), so the masking can be inspected numerically.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "data/image_folder.h"
#include "data/loader.h"
#include "engine/check.h"
#include "engine/serialize.h"
#include "tools/commands.h"
#include "tools/mask_preview.h"

namespace moco_cli {

namespace {

struct BatchArgs {
  std::string data, out, split = "train";
  int n = 16, views = 2, size = 224, workers = 2;
  uint64_t seed = 0;
  int64_t epoch = 0;
  bool no_augment = false, no_shuffle = false, fast_decode = false;
  MaskPreviewOptions masking;  // its strategy, saliency, key encoder and device flags
};

// Folder and file names need not be UTF-8; JSON must be, so bytes that are not become U+FFFD.
std::string utf8_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// The file of each image of the batch, in batch order.
nlohmann::json paths_of(const engine::data::ImageFolder& dataset, const engine::data::Batch& batch) {
  nlohmann::json paths = nlohmann::json::array();
  for (int64_t i : batch.indices.to_vector<int64_t>()) paths.push_back(dataset[i].path);
  return paths;
}

// The batch after the masking, under the names of the masking issue: what the encoders receive
// (query, key, hard_negative), the cells and focal masks drawn, and the views they came from.
void run_masked_batch(const BatchArgs& a) {
  ENGINE_CHECK(!a.no_augment, "--strategy {} masks MoCo v2's augmented views; leave out --no-augment",
               a.masking.strategy);
  ENGINE_CHECK(a.views == 2, "--strategy {} masks a query and a key view; use --views 2, found --views {}",
               a.masking.strategy, a.views);
  MaskPreviewOptions o = a.masking;
  o.data = a.data;
  o.split = a.split;
  o.n = a.n;
  o.size = a.size;
  o.workers = a.workers;
  o.seed = a.seed;
  o.epoch = a.epoch;
  o.shuffle = !a.no_shuffle;
  o.fast_decode = a.fast_decode;
  const MaskPreview preview = make_mask_preview(o);
  const engine::ssl::MaskedBatch& m = preview.masked;
  const engine::data::Batch& batch = preview.batch;

  engine::NamedTensors tensors = {{"query", m.query}, {"key", m.key}};
  if (m.hard_negative.defined()) tensors.emplace_back("hard_negative", m.hard_negative);
  tensors.emplace_back("fg_query", m.fg_query);
  tensors.emplace_back("fg_key", m.fg_key);
  tensors.emplace_back("mask_query", m.mask_query);
  if (m.hard_negative.defined()) tensors.emplace_back("mask_hard_negative", m.mask_hard_negative);
  tensors.emplace_back("focal_query", m.focal_query);
  if (m.hard_negative.defined()) tensors.emplace_back("focal_hard_negative", m.focal_hard_negative);
  if (m.saliency_query.defined()) {
    tensors.emplace_back("saliency_query", m.saliency_query);
    tensors.emplace_back("saliency_key", m.saliency_key);
  }
  tensors.emplace_back("view0", batch.views[0]);
  tensors.emplace_back("view1", batch.views[1]);
  tensors.emplace_back("labels", batch.labels);
  tensors.emplace_back("indices", batch.indices);
  tensors.emplace_back("crop_boxes", batch.boxes);
  const int64_t grid = m.fg_query.size(1);
  engine::Metadata metadata = {
      {"format",
       "moco batch --strategy: what the encoders receive after saliency-guided masking. query (N, 3, S, S) f32: the "
       "masked query input; key (N, 3, S, S) f32: the key input (never masked); hard_negative (N, n_h, 3, S, S) f32: "
       "masked copies of the key input (when --num-nonsem > 0); fg_query, fg_key (N, G, G) u8: 1 = foreground cell; "
       "mask_query (N, 3, G, G), mask_hard_negative (N, n_h, 3, G, G) u8: 1 = that channel of that cell was masked "
       "by grid masking; focal_query (N), focal_hard_negative (N, n_h) u8: 1 = the focal mask was used instead; "
       "saliency_query, saliency_key (N, G, G) f32: the saliency maps (absent for --saliency none); view0, view1 "
       "(N, 3, S, S) f32: the normalised query and key views before high-pass and masking; labels, indices (N) i64; "
       "crop_boxes (N, 2, 4) i32 as top, left, height, width in the decoded image's pixels"},
      {"values", preview.masked.high_passed ? "query, key, hard_negative: high-passed normalised views (x - blur(x)), masked "
                                      "cells filled with noise"
                                    : "query, key, hard_negative: normalised views, (x / 255 - mean) / std, ImageNet "
                                      "mean and std"},
      {"augmentation", "mocov2 (aug-plus)"},
      {"strategy", o.strategy},
      {"saliency", o.saliency},
      {"num_nonsem", std::to_string(o.num_nonsem)},
      {"reference_quirks", o.reference_quirks ? "true" : "false"},
      {"grid", std::to_string(grid)},
      {"key_encoder", preview.key_encoder},
      {"step", "0 (the masks of a run's first step with this seed)"},
      {"root", preview.dataset->root()},
      {"classes", utf8_json(nlohmann::json(preview.dataset->classes()))},
      {"paths", utf8_json(paths_of(*preview.dataset, batch))},
      {"seed", std::to_string(a.seed)},
      {"epoch", std::to_string(a.epoch)},
      {"fast_decode", a.fast_decode ? "true" : "false"},
  };
  engine::save_safetensors(a.out, tensors, metadata);
  fmt::print("wrote {}: masked query, key and {} hard negative(s) of {} images at {}x{} from {} ({} classes), "
             "--strategy {}, --saliency {}, {}x{} grid; key encoder: {}{}\n",
             a.out, o.num_nonsem, batch.size(), a.size, a.size, preview.dataset->root(),
             preview.dataset->classes().size(), o.strategy, o.saliency, grid, grid, preview.key_encoder,
             batch.skipped ? fmt::format("; {} undecodable files skipped", batch.skipped) : "");
}

void run_batch(const BatchArgs& a) {
  namespace data = engine::data;
  auto dataset = std::make_shared<data::ImageFolder>(data::resolve_split(a.data, a.split));
  const data::AugmentConfig augment = a.no_augment ? data::plain_transform(a.size) : data::mocov2_augment(a.size);
  data::LoaderOptions options;
  options.batch_size = a.n;
  options.views = a.no_augment ? 1 : a.views;
  options.workers = a.workers;
  options.seed = a.seed;
  options.shuffle = !a.no_shuffle;
  options.fast_decode = a.fast_decode;
  data::Loader loader(dataset, augment, options);
  loader.start_epoch(a.epoch);
  const data::Batch batch = *loader.next();

  engine::NamedTensors tensors;
  for (size_t v = 0; v < batch.views.size(); ++v) tensors.emplace_back(fmt::format("view{}", v), batch.views[v]);
  tensors.emplace_back("labels", batch.labels);
  tensors.emplace_back("indices", batch.indices);
  tensors.emplace_back("crop_boxes", batch.boxes);
  engine::Metadata metadata = {
      {"format", "moco batch: viewV (N, 3, S, S) f32 NCHW; labels, indices (N) i64; crop_boxes (N, V, 4) i32 as "
                 "top, left, height, width in the decoded image's pixels"},
      {"values", a.no_augment ? "0-255, no normalisation (Resize shorter side + CenterCrop)"
                              : "normalised: (x / 255 - mean) / std, ImageNet mean and std"},
      {"augmentation", a.no_augment ? "none" : "mocov2 (aug-plus)"},
      {"root", dataset->root()},
      {"classes", utf8_json(nlohmann::json(dataset->classes()))},
      {"paths", utf8_json(paths_of(*dataset, batch))},
      {"seed", std::to_string(a.seed)},
      {"epoch", std::to_string(a.epoch)},
      {"fast_decode", a.fast_decode ? "true" : "false"},
  };
  engine::save_safetensors(a.out, tensors, metadata);
  fmt::print("wrote {}: {} view(s) of {} images at {}x{} from {} ({} classes){}\n", a.out, batch.views.size(),
             batch.size(), a.size, a.size, dataset->root(), dataset->classes().size(),
             loader.skipped_this_epoch() ? fmt::format(", {} undecodable files skipped", loader.skipped_this_epoch())
                                         : "");
}

}  // namespace

void add_batch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("batch", "Write one batch as the trainer sees it, for inspection");
  auto a = std::make_shared<BatchArgs>();
  cmd->add_option("DATA", a->data, "a dataset root with train/ (and val/), or an image folder root/<class>/<image>")
      ->required();
  cmd->add_option("--out", a->out, "the .safetensors file to write")->required();
  cmd->add_option("--n", a->n, "images in the batch")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--views", a->views, "augmented views per image")->capture_default_str()->check(CLI::Range(1, 16));
  cmd->add_option("--size", a->size, "output side in pixels")->capture_default_str()->check(CLI::Range(8, 4096));
  cmd->add_option("--seed", a->seed, "seed of the shuffle and the augmentation")->capture_default_str();
  cmd->add_option("--epoch", a->epoch, "which epoch's batch 0 to write")->capture_default_str();
  cmd->add_option("--split", a->split, "the split to read when DATA is a dataset root")->capture_default_str();
  cmd->add_option("-j,--workers", a->workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_flag("--no-augment", a->no_augment, "resize + center crop only, values 0-255");
  cmd->add_flag("--no-shuffle", a->no_shuffle, "take the first images in dataset order");
  cmd->add_flag("--fast-decode", a->fast_decode, "reduced-size JPEG decoding when the crops allow it");
  a->masking.strategy = "none";
  const std::vector<CLI::Option*> masking = add_masking_flags(*cmd, a->masking);
  cmd->callback([a, masking] {
    if (engine::ssl::parse_mask_strategy(a->masking.strategy) != engine::ssl::MaskStrategy::None)
      return run_masked_batch(*a);
    for (const CLI::Option* flag : masking)
      ENGINE_CHECK(flag->count() == 0 || flag->get_name() == "--strategy",
                   "{} shapes the masking, which --strategy none leaves out; add --strategy hp, blur or mean",
                   flag->get_name());
    run_batch(*a);
  });
}

}  // namespace moco_cli
