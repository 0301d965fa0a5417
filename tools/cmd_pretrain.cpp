// cmd_pretrain.cpp - `moco pretrain DATA --save-dir D`: contrastive pretraining (ssl/run/trainer.h),
// MoCo v2 by default with the reference main_moco.py's flag names and defaults, or SimCLR
// (--method simclr), plus --image-size, --device, --max-steps, --save-freq-steps, --bn-groups,
// --saliency, --optimizer and --reference-quirks. The flags it shares with `moco supervised` are
// registered by tools/training_flags.h. Every word-valued flag becomes its enum here, once; the
// library never parses them.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <limits>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/precision.h"
#include "ssl/run/trainer.h"
#include "tools/commands.h"
#include "tools/processes.h"
#include "tools/training_flags.h"

namespace moco_cli {

namespace {

struct PretrainArgs {
  engine::ssl::PretrainConfig config;
  TrainingFlags shared;  // the flags `moco supervised` also takes
  std::string method = "mocov2";
  std::string strategy = "none";
  std::string saliency;  // "": the method's own encoder
  std::string optimizer = "sgd";
  // The options given on the command line that belong to one method only, checked against --method.
  std::vector<CLI::Option*> moco_only, simclr_only;
  CLI::Option* lars_eta = nullptr;
};

// The flags as given, for args.json and the checkpoints' metadata; keys in the order of the
// reference's flags.
std::string args_json(const PretrainArgs& a, const std::string& device) {
  namespace ssl = engine::ssl;
  const ssl::PretrainConfig& c = a.config;
  const bool simclr = c.method == ssl::Method::SimClr;
  nlohmann::ordered_json j = {{"schedule", c.schedule},
                              {"cos", c.cos},
                              {"cos_per_step", c.cos_per_step},
                              {"optimizer", ssl::optimizer_name(c.optimizer)},
                              {"momentum", c.momentum},
                              {"weight_decay", c.weight_decay},
                              {"lars_eta", c.lars_eta}};
  if (simclr) {
    j["simclr_dim"] = c.simclr.dim;
    j["simclr_t"] = c.simclr.temperature;
    j["mlp"] = true;
    j["alpha"] = c.simclr.alpha;
  } else {
    j["moco_dim"] = c.moco.dim;
    j["moco_k"] = c.moco.queue_size;
    j["moco_m"] = c.moco.momentum;
    j["moco_t"] = c.moco.temperature;
    j["mlp"] = c.moco.mlp;
    j["alpha"] = c.moco.alpha;
  }
  const nlohmann::ordered_json rest = {{"aug_plus", c.aug_plus},
                                       {"blur_sigma", c.blur_sigma},
                                       {"num_nonsem", c.num_nonsem},
                                       {"strategy", ssl::mask_strategy_name(c.strategy)},
                                       {"saliency", ssl::saliency_source_text(c.saliency)},
                                       {"bn_groups", simclr ? c.simclr.bn_groups : c.moco.bn_groups},
                                       {"reference_quirks", c.moco.reference_quirks}};
  for (const auto& [key, value] : rest.items()) j[key] = value;
  return training_args_json(c, a.shared, j, device);
}

// The flags that name words become enums, and SimCLR takes the flags it shares with MoCo.
void apply_words(PretrainArgs& a) {
  namespace ssl = engine::ssl;
  engine::ssl::PretrainConfig& c = a.config;
  c.method = ssl::method_from_name(a.method);
  c.strategy = ssl::parse_mask_strategy(a.strategy);
  c.optimizer = a.optimizer == "lars" ? ssl::OptimizerKind::Lars : ssl::OptimizerKind::Sgd;
  ENGINE_CHECK(c.optimizer == ssl::OptimizerKind::Lars || a.lars_eta->count() == 0,
               "pretrain: --lars-eta is LARS's; add --optimizer lars, or leave it out");
  const bool simclr = c.method == ssl::Method::SimClr;
  for (CLI::Option* given : simclr ? a.moco_only : a.simclr_only) {
    ENGINE_CHECK(given->count() == 0, "pretrain: {} is a flag of --method {}, not of --method {}", given->get_name(),
                 simclr ? "mocov2" : "simclr", a.method);
  }
  c.saliency = ssl::parse_saliency_source(a.saliency.empty() ? (simclr ? "online" : "momentum") : a.saliency);
  c.moco.arch = a.shared.arch;
  c.moco.small_stem = a.shared.small_stem;
  c.moco.width = a.shared.width;
  c.moco.bn_groups = a.shared.bn_groups;
  if (simclr) {
    c.simclr.arch = c.moco.arch;
    c.simclr.small_stem = c.moco.small_stem;
    c.simclr.width = c.moco.width;
    c.simclr.alpha = c.moco.alpha;
    // SimCLR's reference normalises over the whole batch; --bn-groups asks for per-group statistics.
    c.simclr.bn_groups = a.shared.bn_groups_option->count() ? c.moco.bn_groups : 1;
  }
}

// MOCO_TEST_FAULT=KIND@STEP:RANK (the distributed fault tests, tests/ssl/distributed_faults.sh):
// at step STEP, rank RANK poisons its batch with NaN (nan), throws (throw) or stops answering
// (hang). Nothing happens when the variable is unset.
std::function<void(int64_t, engine::data::Batch&)> fault_injection(int rank) {
  const char* text = std::getenv("MOCO_TEST_FAULT");
  if (text == nullptr || text[0] == '\0') return {};
  char kind[16] = {0};
  long long step = -1;
  int fault_rank = -1;
  ENGINE_CHECK(std::sscanf(text, "%15[a-z]@%lld:%d", kind, &step, &fault_rank) == 3 &&
                   (std::string(kind) == "nan" || std::string(kind) == "throw" || std::string(kind) == "hang"),
               "MOCO_TEST_FAULT='{}': expected KIND@STEP:RANK with KIND nan, throw or hang", text);
  if (fault_rank != rank) return {};
  const std::string what = kind;
  return [what, step](int64_t now, engine::data::Batch& batch) {
    if (now != step) return;
    if (what == "nan") batch.views[0].fill_(std::numeric_limits<double>::quiet_NaN());
    if (what == "throw") ENGINE_THROW("MOCO_TEST_FAULT: the injected failure at step {}", now);
    if (what == "hang")
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
  };
}

void run_pretrain(PretrainArgs& a) {
  engine::ssl::PretrainConfig& c = a.config;
  engine::Collectives& world = join_processes(a.shared.processes);
  apply_words(a);
  // Each rank of a distributed run is one of the reference's GPUs: one BatchNorm group unless told.
  if (world.world_size() > 1 && !a.shared.bn_groups_option->count()) {
    a.shared.bn_groups = c.moco.bn_groups = c.simclr.bn_groups = 1;
  }
  c.device = rank_device(a.shared.device, world);
  c.precision = engine::parse_precision(a.shared.device.precision);
  c.cuda_graphs = engine::ssl::parse_cuda_graphs(a.shared.cuda_graphs);
  c.world = &device_collectives(c.device, a.shared.processes);
  c.before_step = fault_injection(world.rank());
  c.args_json = args_json(a, c.device.str());
  const engine::ssl::PretrainResult r = engine::ssl::pretrain(c);
  if (world.is_root()) fmt::print("{}\n", done_line(r));
}

}  // namespace

void add_pretrain_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "contrastive pretraining: MoCo v2 (the reference's main_moco.py) or SimCLR");
  auto a = std::make_shared<PretrainArgs>();
  engine::ssl::PretrainConfig& c = a->config;
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  a->shared.bn_groups = 4;  // the reference run's 4 GPUs (METHOD.md section 8)
  add_training_flags(cmd, c, a->shared,
                     "virtual GPUs within each process: BatchNorm statistics per group of images (MoCo: and shuffle BN "
                     "across them; default 4, the reference's GPUs, or 1 per process under mpirun; SimCLR: default 1, "
                     "global BatchNorm)");
  cmd->add_option("--schedule", c.schedule, "epochs at which the lr drops x0.1 (when not --cos)")
      ->capture_default_str()
      ->delimiter(',');
  cmd->add_flag("--cos", c.cos, "cosine schedule, set once per epoch (the reference)");
  cmd->add_option("--method", a->method,
                  "mocov2 (momentum encoder and queue), or simclr (one encoder, NT-Xent over the batch's 2B views)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mocov2", "simclr"}));
  cmd->add_option("--optimizer", a->optimizer,
                  "sgd (the reference's), or lars (SimCLR's: layer-wise trust ratio, BatchNorm and biases excluded "
                  "from it and from weight decay)")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "lars"}));
  a->lars_eta = cmd->add_option("--lars-eta", c.lars_eta, "LARS's trust coefficient")->capture_default_str();
  a->moco_only.push_back(
      cmd->add_option("--moco-dim", c.moco.dim, "embedding dimension")->capture_default_str()->check(CLI::Range(1, 65536)));
  a->moco_only.push_back(cmd->add_option("--moco-k", c.moco.queue_size, "queue length (a multiple of the batch)")
                             ->capture_default_str()
                             ->check(CLI::Range(int64_t{1}, int64_t{1} << 24)));
  a->moco_only.push_back(
      cmd->add_option("--moco-m", c.moco.momentum, "key encoder momentum")->capture_default_str()->check(CLI::Range(0.0, 1.0)));
  a->moco_only.push_back(cmd->add_option("--moco-t", c.moco.temperature, "softmax temperature")->capture_default_str());
  a->moco_only.push_back(cmd->add_flag("--mlp", c.moco.mlp, "the MoCo v2 MLP head (SimCLR always has its own)"));
  a->simclr_only.push_back(cmd->add_option("--simclr-dim", c.simclr.dim, "SimCLR's embedding dimension")
                               ->capture_default_str()
                               ->check(CLI::Range(1, 65536)));
  a->simclr_only.push_back(cmd->add_option("--simclr-t", c.simclr.temperature,
                                           "SimCLR's NT-Xent temperature (0.2: our choice, the paper gives none)")
                               ->capture_default_str());
  cmd->add_flag("--aug-plus", c.aug_plus, "MoCo v2's augmentation (blur, stronger colour jitter)");
  cmd->add_option("--blur-sigma", c.blur_sigma,
                  "MIN,MAX of --aug-plus's Gaussian blur in pixels (the reference's 0.1,2 suits 224 pixels; scale it "
                  "by image size / 224 for small images)")
      ->capture_default_str()
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--alpha", c.moco.alpha, "weight of the hard-negative logits")->capture_default_str();
  cmd->add_option("--num-nonsem", c.num_nonsem, "hard negatives per image")
      ->capture_default_str()
      ->check(CLI::Range(0, 16));
  cmd->add_option("--strategy", a->strategy,
                  "saliency-guided masking of the first view and the hard negatives: hp (high-pass inputs, noise "
                  "fill), blur, mean, or none (the plain method)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "hp", "blur", "mean"}));
  cmd->add_option("--saliency", a->saliency,
                  "where the saliency maps come from: the method's own encoder (momentum: MoCo's key encoder, the "
                  "default for mocov2; online: SimCLR's encoder, the default for simclr), pretrained:FILE (a frozen "
                  "torchvision-named ResNet safetensors, as the reference), or none (every cell foreground)");
  cmd->add_flag("--reference-quirks", c.moco.reference_quirks,
                "reproduce the published code's oddities (docs/METHOD.md section 11) instead of the clean defaults");
  cmd->callback([a] { run_pretrain(*a); });
}

}  // namespace moco_cli
