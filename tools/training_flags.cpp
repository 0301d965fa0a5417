// training_flags.cpp - see training_flags.h.
#include "tools/training_flags.h"

#include <fmt/format.h>

#include "layers/resnet.h"

namespace moco_cli {

void add_training_flags(CLI::App* cmd, engine::ssl::PretrainConfig& c, TrainingFlags& flags,
                        const std::string& bn_groups_help) {
  cmd->add_option("DATA", c.data, "a dataset root with train/, or an image folder root/<class>/<image>")->required();
  cmd->add_option("--save-dir", c.save_dir, "where checkpoints/, logs/, metrics.jsonl and args.json go")->required();
  cmd->add_option("-a,--arch", flags.arch, "the encoder")
      ->capture_default_str()
      ->check(CLI::IsMember(engine::nn::resnet_arch_names()));
  cmd->add_flag("--small-stem", flags.small_stem, "3x3 stride-1 stem without max-pool, for images of 32-96 pixels");
  cmd->add_option("--width", flags.width,
                  "channels of the stem and layer1 (torchvision's 64; later stages double it); 16 or 32 make small "
                  "nets for CPU experiments")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("-b,--batch-size", c.batch_size,
                  "global batch: all processes and virtual GPUs together (each of N mpirun processes takes 1/N)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--lr,--learning-rate", c.lr, "initial learning rate")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "epochs to train")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--cos-per-step", c.cos_per_step, "cosine schedule evaluated at every step");
  cmd->add_option("--momentum", c.momentum, "the optimizer's momentum")->capture_default_str();
  cmd->add_option("--wd,--weight-decay", c.weight_decay,
                  "weight decay (SGD: on every parameter, as the reference; LARS: not on BatchNorm and biases)")
      ->capture_default_str();
  flags.bn_groups_option = cmd->add_option("--bn-groups", flags.bn_groups, bn_groups_help)
                               ->capture_default_str()
                               ->check(CLI::Range(1, 1024));
  cmd->add_option("--image-size", c.image_size, "crop side in pixels")
      ->capture_default_str()
      ->check(CLI::Range(16, 4096));
  cmd->add_option("--resume", c.resume,
                  "a checkpoint to continue from, or 'auto' (SAVE_DIR/checkpoints/last.safetensors)");
  cmd->add_option("--seed", c.seed,
                  "seed of every random draw (data order and augmentation, initialisation, and the method's own: "
                  "queue, shuffle BN, masks)")
      ->capture_default_str();
  cmd->add_option("-j,--workers", c.workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_flag("--fast-decode", c.fast_decode, "reduced-size JPEG decoding when the crops allow it");
  cmd->add_option("-p,--print-freq", c.print_freq, "log every this many steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  add_device_flags(cmd, flags.device);
  add_process_flags(cmd, flags.processes);
  cmd->add_option("--cuda-graphs", flags.cuda_graphs,
                  "capture the training step once as a CUDA graph and replay it (one launch a step instead of "
                  "hundreds): auto where it can be (one process on a GPU; not --reference-quirks with hard "
                  "negatives), on (refuse elsewhere), off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--max-steps", c.max_steps, "stop after this many optimizer steps in all (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--save-freq-steps", c.save_freq_steps, "also checkpoint every this many steps (0: epoch ends only)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--knn-every", c.knn_every,
                  "every this many epochs, the kNN accuracy of the online encoder's features (train/ as the memory "
                  "bank, val/ as queries), logged as knn_top1 (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--knn-data", c.knn_data, "the dataset root of the kNN monitor (default: DATA)");
  cmd->add_option("--knn-k", c.knn_k, "the kNN monitor's neighbours")->capture_default_str();
  cmd->add_option("--knn-t", c.knn_t, "the kNN monitor's temperature")->capture_default_str();
}

std::string training_args_json(const engine::ssl::PretrainConfig& c, const TrainingFlags& flags,
                               const nlohmann::ordered_json& middle, const std::string& device) {
  nlohmann::ordered_json j = {{"data", c.data},
                              {"save_dir", c.save_dir},
                              {"method", engine::ssl::method_name(c.method)},
                              {"arch", flags.arch},
                              {"small_stem", flags.small_stem},
                              {"width", flags.width},
                              {"batch_size", c.batch_size},
                              {"lr", c.lr},
                              {"epochs", c.epochs}};
  for (const auto& [key, value] : middle.items()) j[key] = value;
  const nlohmann::ordered_json tail = {{"image_size", c.image_size},
                                       {"seed", c.seed},
                                       {"workers", c.workers},
                                       {"fast_decode", c.fast_decode},
                                       {"device", device},
                                       {"precision", flags.device.precision},
                                       {"cuda_graphs", flags.cuda_graphs},
                                       {"max_steps", c.max_steps},
                                       {"save_freq_steps", c.save_freq_steps},
                                       {"resume", c.resume},
                                       {"knn_every", c.knn_every},
                                       {"knn_data", c.knn_data},
                                       {"knn_k", c.knn_k},
                                       {"knn_t", c.knn_t}};
  for (const auto& [key, value] : tail.items()) j[key] = value;
  return j.dump(/*indent=*/2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

std::string done_line(const engine::ssl::PretrainResult& r) {
  return fmt::format("done: epoch {}, step {}; loss {:.4f} (first step of this run {:.4f}); last checkpoint {}{}{}",
                     r.position.epoch, r.position.step, r.last_loss, r.first_loss,
                     r.last_checkpoint.empty() ? "none" : r.last_checkpoint,
                     r.last_knn_top1 >= 0 ? fmt::format("; kNN top-1 {:.2f}%", r.last_knn_top1) : "",
                     r.val_top1 >= 0 ? fmt::format("; validation top-1 {:.2f}%, top-5 {:.2f}%", r.val_top1, r.val_top5)
                                     : "");
}

}  // namespace moco_cli
