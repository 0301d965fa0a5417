// cmd_masks.cpp - `moco masks DATA --out FILE.jpg`: a picture of the saliency-guided masking of one
// batch (ssl/masking/mask_picture.h): per image the two views, the query's saliency as a heat map with its
// foreground cells outlined, the masked query and the first masked hard negative. The batch and
// the key encoder are those of tools/mask_preview.h.
#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "engine/check.h"
#include "ssl/masking/mask_picture.h"
#include "tools/commands.h"
#include "tools/mask_preview.h"

namespace moco_cli {

namespace {

struct MasksArgs {
  MaskPreviewOptions preview;
  std::string out, pretrained;
  int quality = 90;
};

void run_masks(MasksArgs& a, bool saliency_given) {
  if (!a.pretrained.empty()) {
    ENGINE_CHECK(!saliency_given, "--pretrained {} and --saliency {} both choose the saliency source; give one of them",
                 a.pretrained, a.preview.saliency);
    a.preview.saliency = "pretrained:" + a.pretrained;
  }
  const std::filesystem::path parent = std::filesystem::path(a.out).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    ENGINE_CHECK(!ec, "--out {}: cannot create the folder {}: {}", a.out, parent.string(), ec.message());
  }
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

}  // namespace

void add_masks_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("masks", "Draw the saliency-guided masking of one batch as a JPEG picture");
  auto a = std::make_shared<MasksArgs>();
  MaskPreviewOptions& o = a->preview;
  cmd->add_option("DATA", o.data, "a dataset root with train/ (and val/), or an image folder root/<class>/<image>")
      ->required();
  cmd->add_option("--out", a->out, "the .jpg file to write")->required();
  add_masking_flags(*cmd, o);
  cmd->add_option("--pretrained", a->pretrained, "short for --saliency pretrained:FILE");
  cmd->add_option("--n", o.n, "images in the batch, one row each")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--size", o.size, "view side in pixels")->capture_default_str()->check(CLI::Range(8, 4096));
  cmd->add_option("--seed", o.seed, "seed of the data, a fresh key encoder and the masks")->capture_default_str();
  cmd->add_option("--epoch", o.epoch, "which epoch's batch 0 to draw")->capture_default_str();
  cmd->add_option("--split", o.split, "the split to read when DATA is a dataset root")->capture_default_str();
  cmd->add_option("-j,--workers", o.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--quality", a->quality, "JPEG quality")->capture_default_str()->check(CLI::Range(1, 100));
  const CLI::Option* saliency = cmd->get_option("--saliency");
  cmd->callback([a, saliency] { run_masks(*a, saliency->count() > 0); });
}

}  // namespace moco_cli
