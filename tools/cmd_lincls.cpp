// cmd_lincls.cpp - `moco lincls DATA --pretrained CKPT --save-dir D`: linear classification on a
// frozen backbone (ssl/eval/lincls.h) with the reference main_lincls.py's flag names and defaults.
// Under mpirun the ranks train it together (-b is the global batch) and rank 0 prints the result.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "ssl/eval/lincls.h"
#include "tools/backbone_flags.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/processes.h"

namespace moco_cli {

namespace {

struct LinclsArgs {
  engine::ssl::LinclsConfig config;
  BackboneFlags backbone;
  DeviceFlags device;
  ProcessFlags processes;
  std::string high_pass = "auto";
};

std::string args_json(const LinclsArgs& a, const std::string& device) {
  const engine::ssl::LinclsConfig& c = a.config;
  const nlohmann::ordered_json j = {{"data", c.data},
                                    {"save_dir", c.save_dir},
                                    {"pretrained", a.backbone.pretrained},
                                    {"arch", a.backbone.arch},
                                    {"small_stem", a.backbone.small_stem},
                                    {"width", a.backbone.width},
                                    {"batch_size", c.batch_size},
                                    {"lr", c.lr},
                                    {"epochs", c.epochs},
                                    {"schedule", c.schedule},
                                    {"momentum", c.momentum},
                                    {"weight_decay", c.weight_decay},
                                    {"n_classes", c.num_classes},
                                    {"image_size", c.image_size},
                                    {"high_pass", a.high_pass},
                                    {"cached_features", c.cached_features},
                                    {"seed", a.backbone.seed},
                                    {"workers", c.workers},
                                    {"device", device},
                                    {"precision", a.device.precision},
                                    {"resume", c.resume}};
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run_lincls(LinclsArgs& a) {
  engine::ssl::LinclsConfig& c = a.config;
  engine::Collectives& world = join_processes(a.processes);
  c.backbone = a.backbone.spec();
  c.backbone.precision = engine::parse_precision(a.device.precision);
  c.high_pass = engine::ssl::parse_high_pass(a.high_pass);
  c.seed = a.backbone.seed;
  c.device = rank_device(a.device, world);
  c.world = &device_collectives(c.device, a.processes);
  c.args_json = args_json(a, c.device.str());
  const engine::ssl::LinclsResult r = engine::ssl::linear_classification(c);
  if (!world.is_root()) return;
  fmt::print("\n{:<8} {:>8} {:>8}\n", "epoch", "top-1", "top-5");
  fmt::print("{:<8} {:>7.2f}% {:>7.2f}%   (epoch {})\n", "best", r.best_top1, r.best_top5, r.best_epoch + 1);
  fmt::print("{:<8} {:>7.2f}% {:>7.2f}%   (epoch {})\n", "last", r.last_top1, r.last_top5, r.epochs_done);
  fmt::print("{}: {}/result.json, metrics.jsonl, checkpoints/best.safetensors\n", r.backbone, c.save_dir);
}

}  // namespace

void add_lincls_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("lincls", "linear classification on a frozen encoder (the reference's main_lincls.py)");
  auto a = std::make_shared<LinclsArgs>();
  engine::ssl::LinclsConfig& c = a->config;
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("DATA", c.data, "a dataset root with train/ and val/")->required();
  cmd->add_option("--save-dir", c.save_dir, "where checkpoints/, metrics.jsonl, result.json and logs/ go")->required();
  add_backbone_flags(cmd, a->backbone);
  cmd->add_option("-b,--batch-size", c.batch_size, "batch (the global batch under mpirun: each rank takes b / ranks)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--lr,--learning-rate", c.lr, "initial learning rate")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "epochs to train")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--schedule", c.schedule, "epochs at which the lr drops x0.1")->capture_default_str()->delimiter(',');
  cmd->add_option("--momentum", c.momentum, "SGD momentum")->capture_default_str();
  cmd->add_option("--wd,--weight-decay", c.weight_decay, "weight decay")->capture_default_str();
  cmd->add_option("--n-classes", c.num_classes, "classifier outputs (0: the classes of DATA/train)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  cmd->add_option("--image-size", c.image_size, "crop side (0: the pretraining's --image-size, else 224)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  cmd->add_option("--high-pass", a->high_pass, "high-pass the inputs: auto (when pretrained with hp), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_flag("--cached-features", c.cached_features,
                "train on features of the un-augmented images computed once: fast, not the paper's protocol");
  cmd->add_option("--resume", c.resume, "a lincls checkpoint to continue from, or 'auto'");
  cmd->add_option("-j,--workers", c.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("-p,--print-freq", c.print_freq, "progress every this many steps")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  add_device_flags(cmd, a->device);
  add_process_flags(cmd, a->processes);
  cmd->callback([a] { run_lincls(*a); });
}

}  // namespace moco_cli
