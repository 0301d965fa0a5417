// cmd_probe.cpp - `moco probe DATA --pretrained X --level object|part|both`: linear probes of a
// frozen encoder at the object and the part level (ssl/eval/part_probe.h); a table on stdout and,
// with --json, {"object_top1", "part_top1", "chance_object", "chance_part", ...} in percent.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "engine/file_io.h"
#include "data/augment.h"
#include "ssl/eval/part_picture.h"
#include "ssl/eval/part_probe.h"
#include "tools/backbone_flags.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

struct ProbeArgs {
  engine::ssl::PartProbeConfig config;
  BackboneFlags backbone;
  std::string level = "both", stage = "layer4", high_pass = "auto", json, picture;
  int picture_images = 8;
  DeviceFlags device;
};

nlohmann::ordered_json level_json(const std::optional<engine::ssl::ProbeLevelResult>& r) {
  if (!r) return nullptr;
  return {{"top1", r->top1}, {"chance", r->chance}, {"classes", r->classes}, {"train_rows", r->train_rows},
          {"val_rows", r->val_rows}};
}

void run_probe(ProbeArgs& a) {
  engine::ssl::PartProbeConfig& c = a.config;
  c.backbone = a.backbone.spec();
  c.backbone.precision = engine::parse_precision(a.device.precision);
  c.level = engine::ssl::parse_probe_level(a.level);
  c.stage = engine::ssl::parse_probe_stage(a.stage);
  c.high_pass = engine::ssl::parse_high_pass(a.high_pass);
  c.classifier.seed = a.backbone.seed;
  c.device = a.device.resolve();
  const engine::ssl::PartProbeResult r = engine::ssl::probe_parts(c);
  fmt::print("probe of {} at {} ({}x{} cells, {} px{}):\n", r.backbone, a.stage, r.grid, r.grid, r.image_size,
             r.high_pass ? ", high-passed" : "");
  fmt::print("  {:<7} {:>8} {:>8} {:>8} {:>11} {:>9}\n", "level", "top-1", "chance", "classes", "train rows",
             "val rows");
  auto row = [](const char* name, const std::optional<engine::ssl::ProbeLevelResult>& l) {
    if (l)
      fmt::print("  {:<7} {:>7.2f}% {:>7.2f}% {:>8} {:>11} {:>9}\n", name, l->top1, l->chance, l->classes,
                 l->train_rows, l->val_rows);
  };
  row("object", r.object);
  row("part", r.part);
  if (r.part)
    fmt::print("  {} part(s) under --min-part-cells {} were not probed (too small for the {}x{} grid)\n",
               r.tiny_parts, c.min_part_cells, r.grid, r.grid);
  if (!a.picture.empty()) {
    const engine::ssl::SplitPartPictures pictures =
        engine::ssl::part_pictures_of_split(c.data, "val", a.picture_images, engine::data::eval_transform(static_cast<int>(r.image_size)),
                                            static_cast<int>(r.stride), static_cast<float>(c.min_part_cells));
    engine::ssl::write_part_picture(a.picture, pictures.images);
    fmt::print("  wrote {}: the parts of {} val/ images over the {}x{} grid and the cells each pools from\n", a.picture,
               pictures.images.size(), r.grid, r.grid);
  }
  if (a.json.empty()) return;
  const auto top1 = [](const auto& l) { return l ? nlohmann::ordered_json(l->top1) : nlohmann::ordered_json(nullptr); };
  const auto chance = [](const auto& l) {
    return l ? nlohmann::ordered_json(l->chance) : nlohmann::ordered_json(nullptr);
  };
  const nlohmann::ordered_json j = {{"object_top1", top1(r.object)},
                                    {"part_top1", top1(r.part)},
                                    {"chance_object", chance(r.object)},
                                    {"chance_part", chance(r.part)},
                                    {"backbone", r.backbone},
                                    {"stage", a.stage},
                                    {"grid", r.grid},
                                    {"stride", r.stride},
                                    {"channels", r.channels},
                                    {"image_size", r.image_size},
                                    {"high_pass", r.high_pass},
                                    {"min_part_cells", c.min_part_cells},
                                    {"tiny_parts", r.tiny_parts},
                                    {"object", level_json(r.object)},
                                    {"part", level_json(r.part)},
                                    {"classifier",
                                     {{"epochs", c.classifier.epochs},
                                      {"lr", c.classifier.lr},
                                      {"batch_size", c.classifier.batch_size},
                                      {"weight_decay", c.classifier.weight_decay},
                                      {"seed", c.classifier.seed}}}};
  engine::write_file_atomic(a.json, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace

void add_probe_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "probe", "object-level and part-level linear probes of a frozen encoder (part masks: data/part_masks.h)");
  auto a = std::make_shared<ProbeArgs>();
  engine::ssl::PartProbeConfig& c = a->config;
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("DATA", c.data, "a dataset root with train/, val/ and (for --level part/both) masks/")->required();
  add_backbone_flags(cmd, a->backbone);
  cmd->add_option("--level", a->level, "what the classifiers name: the object (image class), its parts, or both")
      ->capture_default_str()
      ->check(CLI::IsMember({"object", "part", "both"}));
  cmd->add_option("--stage", a->stage, "the stage whose feature map is pooled")
      ->capture_default_str()
      ->check(CLI::IsMember({"layer3", "layer4"}));
  cmd->add_option("--min-part-cells", c.min_part_cells,
                  "a part smaller than this many cells of the stage's grid (the sum of its shares of each cell) is "
                  "not probed")
      ->capture_default_str();
  cmd->add_option("--image-size", c.image_size, "evaluation crop side (0: the pretraining's --image-size, else 224)")
      ->capture_default_str();
  cmd->add_option("--high-pass", a->high_pass, "high-pass the inputs: auto (when pretrained with hp), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--probe-epochs", c.classifier.epochs, "epochs of each linear classifier")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--probe-lr", c.classifier.lr, "the classifiers' initial learning rate (cosine to 0)")
      ->capture_default_str();
  cmd->add_option("--probe-batch", c.classifier.batch_size, "the classifiers' batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--probe-wd", c.classifier.weight_decay, "the classifiers' weight decay")->capture_default_str();
  cmd->add_option("-b,--batch-size", c.batch_size, "images per forward")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("-j,--workers", c.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  add_device_flags(cmd, a->device);
  cmd->add_option("--json", a->json, "also write the result to this JSON file");
  cmd->add_option("--picture", a->picture,
                  "also draw the part masks of val/ images over the stage's grid, and the cells each part pools from "
                  "(a .jpg; as `moco masks --parts`)");
  cmd->add_option("--picture-images", a->picture_images, "images in --picture, one of each class in turn")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->callback([a] { run_probe(*a); });
}

}  // namespace moco_cli
