// cmd_supervised.cpp - `moco supervised DATA --save-dir D`: the supervised baseline
// (ssl/methods/supervised.h): the same ResNet trained with the labels of DATA/train (cross-entropy,
// SGD with momentum, a cosine schedule per epoch unless --cos-per-step, torchvision's standard
// augmentation: RandomResizedCrop 0.08-1 and a flip), with torchvision's ImageNet recipe as the
// defaults (lr 0.1, 90 epochs, momentum 0.9, weight decay 1e-4). The trainer's run directory,
// checkpoints, resume, metrics, TensorBoard and kNN monitor are pretraining's (ssl/run/trainer.h;
// the shared flags in tools/training_flags.h). At the end, the classifier's top-1 and top-5 on
// DATA/val (the evaluation transform) when DATA has val/. The checkpoint is evaluated like a
// pretraining one: `moco knn`, `lincls`, `embed`, `export` and `info` take it.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>
#include <thread>

#include "engine/precision.h"
#include "ssl/run/trainer.h"
#include "tools/commands.h"
#include "tools/processes.h"
#include "tools/training_flags.h"

namespace moco_cli {

namespace {

struct SupervisedArgs {
  engine::ssl::PretrainConfig config;
  TrainingFlags shared;
};

// The flags as given, for args.json and the checkpoints' metadata.
std::string args_json(const SupervisedArgs& a, const std::string& device) {
  const engine::ssl::PretrainConfig& c = a.config;
  const nlohmann::ordered_json middle = {{"cos", c.cos},
                                         {"cos_per_step", c.cos_per_step},
                                         {"optimizer", engine::ssl::optimizer_name(c.optimizer)},
                                         {"momentum", c.momentum},
                                         {"weight_decay", c.weight_decay},
                                         {"augmentation", "RandomResizedCrop 0.08-1, horizontal flip"},
                                         {"bn_groups", c.supervised.bn_groups}};
  return training_args_json(c, a.shared, middle, device);
}

void run_supervised(SupervisedArgs& a) {
  engine::ssl::PretrainConfig& c = a.config;
  engine::Collectives& world = join_processes(a.shared.processes);
  c.supervised.arch = a.shared.arch;
  c.supervised.small_stem = a.shared.small_stem;
  c.supervised.width = a.shared.width;
  c.supervised.bn_groups = a.shared.bn_groups;
  c.device = rank_device(a.shared.device, world);
  c.precision = engine::parse_precision(a.shared.device.precision);
  c.cuda_graphs = engine::ssl::parse_cuda_graphs(a.shared.cuda_graphs);
  c.world = &device_collectives(c.device, a.shared.processes);
  c.args_json = args_json(a, c.device.str());
  const engine::ssl::PretrainResult r = engine::ssl::pretrain(c);
  if (world.is_root()) fmt::print("{}\n", done_line(r));
}

}  // namespace

void add_supervised_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "supervised", "the supervised baseline: the same ResNet trained with the labels (cross-entropy, SGD, cosine)");
  auto a = std::make_shared<SupervisedArgs>();
  engine::ssl::PretrainConfig& c = a->config;
  c.method = engine::ssl::Method::Supervised;
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  c.lr = 0.1;  // torchvision's ImageNet recipe for a batch of 256
  c.epochs = 90;
  c.cos = true;
  c.momentum = 0.9;
  c.weight_decay = 1e-4;
  a->shared.bn_groups = 1;
  add_training_flags(cmd, c, a->shared,
                     "BatchNorm statistics per group of images within each process (default 1: over the whole "
                     "batch, or each process's share under mpirun)");
  cmd->callback([a] { run_supervised(*a); });
}

}  // namespace moco_cli
