// cmd_pretrain.cpp - `moco pretrain DATA --save-dir D`: contrastive pretraining (ssl/run/trainer.h),
// MoCo v2 by default with the reference main_moco.py's flag names and defaults, or SimCLR
// (--method simclr), plus --image-size, --device, --max-steps, --save-freq-steps, --bn-groups,
// --saliency, --optimizer and --reference-quirks. Every word-valued flag becomes its enum here,
// once; the library never parses them.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <limits>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "layers/resnet.h"
#include "ssl/run/trainer.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/processes.h"

namespace moco_cli {

namespace {

struct PretrainArgs {
  engine::ssl::PretrainConfig config;
  DeviceFlags device;
  ProcessFlags processes;
  bool small_stem = false;
  std::string method = "mocov2";
  std::string strategy = "none";
  std::string saliency;  // "": the method's own encoder
  std::string optimizer = "sgd";
  // The options given on the command line that belong to one method only, checked against --method.
  std::vector<CLI::Option*> moco_only, simclr_only;
  CLI::Option* lars_eta = nullptr;
  CLI::Option* bn_groups = nullptr;
};

// The flags as given, for args.json and the checkpoints' metadata; keys in the order of the
// reference's flags. Bytes of a path that are not UTF-8 become U+FFFD, so the text is valid JSON.
std::string args_json(const engine::ssl::PretrainConfig& c, const std::string& device,
                      const std::string& precision) {
  namespace ssl = engine::ssl;
  const bool simclr = c.method == ssl::Method::SimClr;
  nlohmann::ordered_json j = {{"data", c.data},
                              {"save_dir", c.save_dir},
                              {"method", ssl::method_name(c.method)},
                              {"arch", c.moco.arch},
                              {"small_stem", c.moco.small_stem},
                              {"width", c.moco.width},
                              {"batch_size", c.batch_size},
                              {"lr", c.lr},
                              {"epochs", c.epochs},
                              {"schedule", c.schedule},
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
                                       {"reference_quirks", c.moco.reference_quirks},
                                       {"image_size", c.image_size},
                                       {"seed", c.seed},
                                       {"workers", c.workers},
                                       {"fast_decode", c.fast_decode},
                                       {"device", device},
                                       {"precision", precision},
                                       {"max_steps", c.max_steps},
                                       {"save_freq_steps", c.save_freq_steps},
                                       {"resume", c.resume},
                                       {"knn_every", c.knn_every},
                                       {"knn_data", c.knn_data},
                                       {"knn_k", c.knn_k},
                                       {"knn_t", c.knn_t}};
  for (const auto& [key, value] : rest.items()) j[key] = value;
  return j.dump(/*indent=*/2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
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
  c.moco.small_stem = a.small_stem;
  if (simclr) {
    c.simclr.arch = c.moco.arch;
    c.simclr.small_stem = c.moco.small_stem;
    c.simclr.width = c.moco.width;
    c.simclr.alpha = c.moco.alpha;
    // SimCLR's reference normalises over the whole batch; --bn-groups asks for per-group statistics.
    c.simclr.bn_groups = a.bn_groups->count() ? c.moco.bn_groups : 1;
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
  engine::Collectives& world = join_processes(a.processes);
  apply_words(a);
  // Each rank of a distributed run is one of the reference's GPUs: one BatchNorm group unless told.
  if (world.world_size() > 1 && !a.bn_groups->count()) c.moco.bn_groups = c.simclr.bn_groups = 1;
  c.device = rank_device(a.device, world);
  c.world = &device_collectives(c.device, a.processes);
  c.before_step = fault_injection(world.rank());
  c.args_json = args_json(c, c.device.str(), a.device.precision);
  const engine::ssl::PretrainResult r = engine::ssl::pretrain(c);
  if (!world.is_root()) return;
  fmt::print("done: epoch {}, step {}; loss {:.4f} (first step of this run {:.4f}); last checkpoint {}{}\n",
             r.position.epoch, r.position.step, r.last_loss, r.first_loss,
             r.last_checkpoint.empty() ? "none" : r.last_checkpoint,
             r.last_knn_top1 >= 0 ? fmt::format("; kNN top-1 {:.2f}%", r.last_knn_top1) : "");
}

}  // namespace

void add_pretrain_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "contrastive pretraining: MoCo v2 (the reference's main_moco.py) or SimCLR");
  auto a = std::make_shared<PretrainArgs>();
  engine::ssl::PretrainConfig& c = a->config;
  c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  c.moco.bn_groups = 4;  // the reference run's 4 GPUs (METHOD.md section 8)
  cmd->add_option("DATA", c.data, "a dataset root with train/, or an image folder root/<class>/<image>")->required();
  cmd->add_option("--save-dir", c.save_dir, "where checkpoints/, logs/, metrics.jsonl and args.json go")->required();
  cmd->add_option("-a,--arch", c.moco.arch, "the encoder")
      ->capture_default_str()
      ->check(CLI::IsMember(engine::nn::resnet_arch_names()));
  cmd->add_flag("--small-stem", a->small_stem, "3x3 stride-1 stem without max-pool, for images of 32-96 pixels");
  cmd->add_option("--width", c.moco.width,
                  "channels of the stem and layer1 (torchvision's 64; later stages double it); 16 or 32 make small "
                  "nets for CPU experiments")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("-b,--batch-size", c.batch_size, "global batch: all processes and virtual GPUs together (each of N mpirun processes takes 1/N)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--lr,--learning-rate", c.lr, "initial learning rate")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "epochs to train")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--schedule", c.schedule, "epochs at which the lr drops x0.1 (when not --cos)")
      ->capture_default_str()
      ->delimiter(',');
  cmd->add_flag("--cos", c.cos, "cosine schedule, set once per epoch (the reference)");
  cmd->add_flag("--cos-per-step", c.cos_per_step, "cosine schedule evaluated at every step");
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
  cmd->add_option("--momentum", c.momentum, "the optimizer's momentum")->capture_default_str();
  cmd->add_option("--wd,--weight-decay", c.weight_decay,
                  "weight decay (SGD: on every parameter, as the reference; LARS: not on BatchNorm and biases)")
      ->capture_default_str();
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
  a->bn_groups = cmd->add_option("--bn-groups", c.moco.bn_groups,
                                 "virtual GPUs within each process: BatchNorm statistics per group of images (MoCo: and "
                                 "shuffle BN across them; default 4, the reference's GPUs, or 1 per process under mpirun; "
                                 "SimCLR: default 1, global BatchNorm)")
                     ->capture_default_str()
                     ->check(CLI::Range(1, 1024));
  cmd->add_flag("--reference-quirks", c.moco.reference_quirks,
                "reproduce the published code's oddities (docs/METHOD.md section 11) instead of the clean defaults");
  cmd->add_option("--image-size", c.image_size, "crop side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  cmd->add_option("--resume", c.resume, "a checkpoint to continue from, or 'auto' (SAVE_DIR/checkpoints/last.safetensors)");
  cmd->add_option("--seed", c.seed, "seed of every random draw (data, initialisation, queue, shuffle BN)")
      ->capture_default_str();
  cmd->add_option("-j,--workers", c.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_flag("--fast-decode", c.fast_decode, "reduced-size JPEG decoding when the crops allow it");
  cmd->add_option("-p,--print-freq", c.print_freq, "log every this many steps")->capture_default_str()->check(CLI::Range(1, 1 << 30));
  add_device_flags(cmd, a->device);
  add_process_flags(cmd, a->processes);
  cmd->add_option("--max-steps", c.max_steps, "stop after this many optimizer steps in all (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--save-freq-steps", c.save_freq_steps, "also checkpoint every this many steps (0: epoch ends only)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--knn-every", c.knn_every,
                  "every this many epochs, the kNN accuracy of the online encoder's features (train/ as the memory bank, val/ "
                  "as queries), logged as knn_top1 (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--knn-data", c.knn_data, "the dataset root of the kNN monitor (default: DATA)");
  cmd->add_option("--knn-k", c.knn_k, "the kNN monitor's neighbours")->capture_default_str();
  cmd->add_option("--knn-t", c.knn_t, "the kNN monitor's temperature")->capture_default_str();
  cmd->callback([a] { run_pretrain(*a); });
}

}  // namespace moco_cli
