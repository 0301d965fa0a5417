// cmd_batch.cpp - `moco batch DATA --out B.safetensors`: one batch exactly as the trainer's loader
// makes it (augmented views as NCHW f32 after normalisation, labels, crop boxes), so a user can
// look at what goes into the network. --no-augment writes the decoded images resized (shorter side)
// and center-cropped to --size, without normalisation (0-255), for comparing decoders.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "data/image_folder.h"
#include "data/loader.h"
#include "engine/serialize.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

struct BatchArgs {
  std::string data, out, split = "train";
  int n = 16, views = 2, size = 224, workers = 2;
  uint64_t seed = 0;
  int64_t epoch = 0;
  bool no_augment = false, no_shuffle = false, fast_decode = false;
};

// Folder and file names need not be UTF-8; JSON must be, so bytes that are not become U+FFFD.
std::string utf8_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

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
  nlohmann::json paths = nlohmann::json::array();
  for (int64_t i : batch.indices.to_vector<int64_t>()) paths.push_back((*dataset)[i].path);
  engine::Metadata metadata = {
      {"format", "moco batch: viewV (N, 3, S, S) f32 NCHW; labels, indices (N) i64; crop_boxes (N, V, 4) i32 as "
                 "top, left, height, width in the decoded image's pixels"},
      {"values", a.no_augment ? "0-255, no normalisation (Resize shorter side + CenterCrop)"
                              : "normalised: (x / 255 - mean) / std, ImageNet mean and std"},
      {"augmentation", a.no_augment ? "none" : "mocov2 (aug-plus)"},
      {"root", dataset->root()},
      {"classes", utf8_json(nlohmann::json(dataset->classes()))},
      {"paths", utf8_json(paths)},
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
  cmd->callback([a] { run_batch(*a); });
}

}  // namespace moco_cli
