// training_flags.h - the flags `moco pretrain` and `moco supervised` share (both run the trainer,
// ssl/run/trainer.h), registered once so the two commands spell, check and document them alike; and
// the parts of args.json and of the closing line they share.
//
// The encoder's shape and --bn-groups land in TrainingFlags, which each command copies into its
// method's configuration; every other shared flag lands in the PretrainConfig directly. Defaults
// are the values the variables hold when the flags are registered, so each command sets its own
// first (pretrain: lr 0.03, 200 epochs, 4 BatchNorm groups; supervised: lr 0.1, 90 epochs, 1 group).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "ssl/run/trainer.h"
#include "tools/cli_common.h"
#include "tools/processes.h"

namespace moco_cli {

struct TrainingFlags {
  std::string arch = "resnet50";
  std::string cuda_graphs = "auto";  // ssl/run/step_graph.h
  bool small_stem = false;
  int64_t width = 64;
  int64_t bn_groups = 1;
  CLI::Option* bn_groups_option = nullptr;  // whether --bn-groups was given
  DeviceFlags device;
  ProcessFlags processes;
};

// DATA, --save-dir, -a/--arch, --small-stem, --width, -b, --lr, --epochs, --cos-per-step,
// --momentum, --wd, --bn-groups (its help `bn_groups_help`), --image-size, --resume, --seed, -j,
// --fast-decode, -p, --device, --precision, the process flags, --max-steps, --save-freq-steps and
// the kNN monitor's --knn-every, --knn-data, --knn-k, --knn-t.
void add_training_flags(CLI::App* cmd, engine::ssl::PretrainConfig& c, TrainingFlags& flags,
                        const std::string& bn_groups_help);

// args.json in the reference's key order: the head (data, save_dir, method, arch, small_stem, width,
// batch_size, lr, epochs), the command's own keys (`middle`, in its order), then the tail
// (image_size, seed, workers, fast_decode, device, precision, max_steps, save_freq_steps, resume
// and the kNN monitor's). Bytes of a path that are not UTF-8 become U+FFFD, so the text is valid JSON.
std::string training_args_json(const engine::ssl::PretrainConfig& c, const TrainingFlags& flags,
                               const nlohmann::ordered_json& middle, const std::string& device);

// "done: epoch E, step S; loss L (first step of this run F); last checkpoint P", then the kNN
// monitor's and the validation's top-1 when they ran.
std::string done_line(const engine::ssl::PretrainResult& r);

}  // namespace moco_cli
