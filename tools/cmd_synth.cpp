// cmd_synth.cpp - `moco synth OUT`: writes the built-in synthetic dataset (data/synth.h), image
// folders for training and evaluation with a foreground and a part mask for every image.
#include <fmt/format.h>

#include <memory>

#include "data/synth.h"
#include "tools/commands.h"

namespace moco_cli {

void add_synth_command(CLI::App& app) {
  auto options = std::make_shared<engine::data::SynthOptions>();
  auto out = std::make_shared<std::string>();
  const int class_count = static_cast<int>(engine::data::synth_class_names().size());
  CLI::App* cmd = app.add_subcommand(
      "synth", "write the synthetic dataset: OUT/train/<class>/, OUT/val/<class>/ (JPEG) and OUT/masks/ (PNG)");
  cmd->add_option("OUT", *out, "output folder (created; see OUT/README.txt afterwards)")->required();
  cmd->add_option("--classes", options->classes, fmt::format("number of classes, 2 to {}", class_count))
      ->capture_default_str()
      ->check(CLI::Range(2, class_count));
  cmd->add_option("--train-per-class", options->train_per_class, "training images per class")
      ->capture_default_str()
      ->check(CLI::Range(1, 99999));
  cmd->add_option("--val-per-class", options->val_per_class, "validation images per class")
      ->capture_default_str()
      ->check(CLI::Range(0, 99999));
  cmd->add_option("--size", options->size, "image side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  cmd->add_option("--clutter", options->clutter,
                  "most distractor shapes in the background (0: none, an easier dataset)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_flag("--plain-background", options->plain_background,
                "backgrounds of a colour gradient only, without noise and texture (an easier dataset)");
  cmd->add_option("--seed", options->seed, "random seed: the same seed gives the same pixels")->capture_default_str();
  cmd->add_option("--threads", options->threads, "worker threads, 0 for one per core")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--force", options->force,
                "replace an earlier `moco synth` output in OUT (its train/, val/ and masks/ are deleted first)");
  cmd->callback([options, out] { engine::data::write_synth_dataset(*out, *options); });
}

}  // namespace moco_cli
