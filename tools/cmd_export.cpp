// cmd_export.cpp - `moco export CKPT --format torchvision|detectron2 --out FILE.safetensors`: the
// pretrained backbone (MoCo v2's encoder_q, SimCLR's encoder, or a torchvision-named ResNet) without
// its head, named for torchvision or for detectron2 (ssl/run/export.h). README "Exporting the
// backbone" shows how PyTorch loads each.
#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "engine/check.h"
#include "ssl/run/export.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

namespace fs = std::filesystem;

struct ExportArgs {
  std::string checkpoint;
  std::string format = "torchvision";
  std::string out;
};

void run_export(const ExportArgs& a) {
  const engine::ssl::ExportFormat format = engine::ssl::parse_export_format(a.format);
  // Refused before the checkpoint is read: a typo in --out should not cost a load.
  const fs::path folder = fs::path(a.out).parent_path();
  ENGINE_CHECK(folder.empty() || fs::is_directory(folder),
               "--out {}: the folder {} does not exist; create it first or write somewhere else", a.out,
               folder.string());
  ENGINE_CHECK(!fs::is_directory(a.out), "--out {} is a folder; give a file name such as {}/backbone.safetensors",
               a.out, a.out);
  std::error_code ec;
  ENGINE_CHECK(!fs::equivalent(a.out, a.checkpoint, ec),
               "--out {} is the checkpoint being exported; writing there would replace it: choose another file",
               a.out);
  const engine::ssl::ExportedBackbone exported = engine::ssl::export_backbone(a.checkpoint, format);
  engine::ssl::write_export(a.out, exported);
  fmt::print("exported {} tensors of {} (width {}{}) from {} ({}) as {} to {}\n", exported.tensors.size(),
             exported.arch, exported.metadata.at("width"),
             exported.metadata.at("small_stem") == "true" ? ", small stem" : "", a.checkpoint, exported.source,
             engine::ssl::export_format_name(format), a.out);
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Write a pretrained backbone (without its head) with torchvision's or detectron2's names, for PyTorch");
  auto a = std::make_shared<ExportArgs>();
  cmd->add_option("CKPT", a->checkpoint,
                  "a `moco pretrain` or `moco supervised` checkpoint (MoCo v2's encoder_q, SimCLR's encoder or the "
                  "supervised network is exported) or a ResNet "
                  "state dict with torchvision's names")
      ->required();
  cmd->add_option("--format", a->format,
                  "torchvision (loads into torchvision.models.resnetNN() with strict=False, only fc.* missing) or "
                  "detectron2 (the names of MoCo's convert-pretrain-to-detectron2.py)")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "the .safetensors file to write (atomically)")->required();
  cmd->callback([a] { run_export(*a); });
}

}  // namespace moco_cli
