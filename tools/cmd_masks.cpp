// cmd_masks.cpp - `moco masks DATA --out FILE.jpg`: a picture of the saliency-guided masking of one
// batch (ssl/masking/mask_picture.h): per image the two views, the query's saliency as a heat map with its
// foreground cells outlined, the masked query and the first masked hard negative. The batch and
// the key encoder are those of tools/mask_preview.h.
//
// `moco masks DATA --parts --out FILE.jpg` draws the part masks instead (ssl/eval/part_picture.h):
// per image the evaluation view, its parts over the grid of --stage, and the cells each part pools
// from in part-level probing. No encoder runs: the grid's side comes from -a, --small-stem and
// --size. The images are the first of each class of --split in turn (class 0's first, class 1's
// first, ..., then the second of each), so every class shows; masks come from DATA/masks/
// (data/part_masks.h).
#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "data/augment.h"
#include "engine/check.h"
#include "layers/resnet.h"
#include "ssl/eval/part_picture.h"
#include "ssl/eval/part_probe.h"
#include "ssl/masking/mask_picture.h"
#include "tools/commands.h"
#include "tools/mask_preview.h"

namespace moco_cli {

namespace {

namespace fs = std::filesystem;
namespace data = engine::data;

struct MasksArgs {
  MaskPreviewOptions preview;
  std::string out, pretrained;
  int quality = 90;
  // --parts
  bool parts = false;
  std::string stage = "layer4";
  float min_part_cells = 0.5f;
};

void create_out_folder(const std::string& out) {
  const fs::path parent = fs::path(out).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  ENGINE_CHECK(!ec, "--out {}: cannot create the folder {}: {}", out, parent.string(), ec.message());
}

void run_masks(MasksArgs& a, bool saliency_given) {
  if (!a.pretrained.empty()) {
    ENGINE_CHECK(!saliency_given, "--pretrained {} and --saliency {} both choose the saliency source; give one of them",
                 a.pretrained, a.preview.saliency);
    a.preview.saliency = "pretrained:" + a.pretrained;
  }
  create_out_folder(a.out);
  const MaskPreview preview = make_mask_preview(a.preview);
  engine::ssl::MaskPictureOptions options;
  options.rows = a.preview.n;
  options.quality = a.quality;
  engine::ssl::write_mask_picture(a.out, preview.batch.views[0], preview.batch.views[1], preview.masked, options);
  const int64_t grid = preview.masked.fg_query.size(1);
  fmt::print("wrote {}: {} images at {}x{} from {}, --strategy {}, --saliency {}, {} hard negative(s), {}x{} grid; "
             "key encoder: {}\n",
             a.out, preview.batch.size(), a.preview.size, a.preview.size, preview.dataset->root(), a.preview.strategy,
             a.preview.saliency, a.preview.num_nonsem, grid, grid, preview.key_encoder);
}

void run_part_masks(const MasksArgs& a) {
  const MaskPreviewOptions& o = a.preview;
  const fs::path split = fs::path(o.data) / o.split;
  ENGINE_CHECK(fs::is_directory(split),
               "--parts: {} is not a folder; --parts reads a dataset root DATA with DATA/{}/<class>/<image> and the "
               "part masks in DATA/masks/ (data/part_masks.h)",
               split.string(), o.split);
  create_out_folder(a.out);

  // The grid depends on the stem and the stage only, so a ResNet of width 1 gives it at no cost.
  engine::nn::ResNetConfig config;
  config.arch = o.arch;
  config.stem = o.small_stem ? engine::nn::ResNetStem::SmallImage : engine::nn::ResNetStem::ImageNet;
  config.width = 1;
  const auto net = engine::nn::make_resnet(config, 0);
  const int stage = engine::ssl::parse_probe_stage(a.stage);
  const int grid = static_cast<int>(net->stage_map_side(o.size, stage));
  const engine::ssl::SplitPartPictures pictures = engine::ssl::part_pictures_of_split(
      o.data, o.split, o.n, data::eval_transform(o.size), static_cast<int>(net->stage_stride(stage)), a.min_part_cells);
  engine::ssl::write_part_picture(a.out, pictures.images, a.quality);
  fmt::print(
      "wrote {}: the parts of {} images of {} at {}x{} over {}'s {}x{} grid ({}{}); {} parts, {} of them "
      "under {:g} cells skipped as too small\n",
      a.out, pictures.images.size(), split.string(), o.size, o.size, a.stage, grid, grid, o.arch,
      o.small_stem ? " small stem" : "", pictures.parts, pictures.skipped, a.min_part_cells);
}

// Flags given that the mode does not use are refused rather than ignored.
void refuse_given(const std::vector<const CLI::Option*>& options, const char* why) {
  for (const CLI::Option* option : options) ENGINE_CHECK(option->count() == 0, "{} {}", option->get_name(), why);
}

}  // namespace

void add_masks_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "masks", "Draw the saliency-guided masking of one batch, or with --parts the part masks, as a JPEG picture");
  auto a = std::make_shared<MasksArgs>();
  MaskPreviewOptions& o = a->preview;
  cmd->add_option("DATA", o.data, "a dataset root with train/ (and val/), or an image folder root/<class>/<image>")
      ->required();
  cmd->add_option("--out", a->out, "the .jpg file to write")->required();
  std::vector<const CLI::Option*> masking_only;
  for (const CLI::Option* option : add_masking_flags(*cmd, o))
    if (option->get_name() != "--arch" && option->get_name() != "--small-stem") masking_only.push_back(option);
  masking_only.push_back(cmd->add_option("--pretrained", a->pretrained, "short for --saliency pretrained:FILE"));
  cmd->add_option("--n", o.n, "images in the batch, one row each")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--size", o.size, "view side in pixels")->capture_default_str()->check(CLI::Range(8, 4096));
  masking_only.push_back(
      cmd->add_option("--seed", o.seed, "seed of the data, a fresh key encoder and the masks")->capture_default_str());
  masking_only.push_back(cmd->add_option("--epoch", o.epoch, "which epoch's batch 0 to draw")->capture_default_str());
  cmd->add_option("--split", o.split, "the split to read when DATA is a dataset root")->capture_default_str();
  masking_only.push_back(
      cmd->add_option("-j,--workers", o.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256)));
  cmd->add_option("--quality", a->quality, "JPEG quality")->capture_default_str()->check(CLI::Range(1, 100));
  cmd->add_flag("--parts", a->parts,
                "draw the part masks instead of the masking: per image the evaluation view, its parts over the grid "
                "of --stage and the cells each part pools from in part-level probing (needs DATA/masks/parts.txt "
                "and a mask per image); no encoder runs");
  const std::vector<const CLI::Option*> parts_only = {
      cmd->add_option("--stage", a->stage, "with --parts: the stage whose grid is drawn")
          ->capture_default_str()
          ->check(CLI::IsMember({"layer3", "layer4"})),
      cmd->add_option("--min-part-cells", a->min_part_cells,
                      "with --parts: a part whose area is under this many grid cells is skipped as too small")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber),
  };
  const CLI::Option* saliency = cmd->get_option("--saliency");
  cmd->callback([a, saliency, masking_only, parts_only] {
    if (a->parts) {
      refuse_given(masking_only, "shapes the masking picture, which --parts does not draw; leave it out");
      run_part_masks(*a);
    } else {
      refuse_given(parts_only, "is for the part picture: add --parts, or leave it out");
      run_masks(*a, saliency->count() > 0);
    }
  });
}

}  // namespace moco_cli
