// cmd_knn.cpp - `moco knn DATA --pretrained CKPT|random`: the weighted kNN classifier (ssl/eval/knn.h)
// on a frozen backbone's features of DATA/train (memory bank) and DATA/val (queries). Under mpirun
// the ranks share the images (ssl/eval/features.h) and rank 0 prints the result.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "engine/file_io.h"
#include "ssl/eval/backbone.h"
#include "ssl/eval/knn.h"
#include "tools/backbone_flags.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/processes.h"

namespace moco_cli {

namespace {

struct KnnArgs {
  std::string data;
  BackboneFlags backbone;
  engine::ssl::KnnOptions knn;
  int64_t image_size = 0;
  std::string high_pass = "auto";
  int64_t batch_size = 256;
  int workers = 1;
  DeviceFlags device;
  ProcessFlags processes;
  std::string json;
};

void run_knn(const KnnArgs& a) {
  engine::Collectives& world = join_processes(a.processes);
  const engine::Device device = rank_device(a.device, world);
  engine::ssl::BackboneSpec spec = a.backbone.spec();
  spec.precision = engine::parse_precision(a.device.precision);
  const engine::ssl::Backbone backbone = engine::ssl::load_backbone(spec, device);
  engine::ssl::FeatureOptions fo;
  fo.batch_size = a.batch_size;
  fo.workers = a.workers;
  fo.seed = a.backbone.seed;
  fo.high_pass = engine::ssl::evaluation_high_pass(engine::ssl::parse_high_pass(a.high_pass), backbone);
  fo.device = device;
  fo.world = &device_collectives(device, a.processes);
  const int64_t size = engine::ssl::evaluation_image_size(a.image_size, backbone);
  if (world.is_root())
    fmt::print("knn: {} on {}{}, {} px{}, k {}, t {}\n", backbone.description, device.str(),
               world.world_size() > 1 ? fmt::format(" and {} ranks in all", world.world_size()) : "", size,
               fo.high_pass ? ", high-passed" : "", a.knn.k, a.knn.temperature);
  const engine::ssl::TopkCounts counts = engine::ssl::knn_on_folders(*backbone.net, a.data, size, fo, a.knn);
  if (!world.is_root()) return;
  fmt::print("knn top-1 {:.2f}%  top-5 {:.2f}%  ({} validation images)\n", counts.top1(), counts.top5(), counts.total);
  if (!a.json.empty()) {
    const nlohmann::ordered_json j = {{"backbone", backbone.description}, {"knn_top1", counts.top1()},
                                      {"knn_top5", counts.top5()},       {"k", a.knn.k},
                                      {"t", a.knn.temperature},          {"image_size", size},
                                      {"high_pass", fo.high_pass},       {"images", counts.total},
                                      {"precision", a.device.precision}};
    engine::write_file_atomic(a.json, j.dump(2) + "\n");
  }
}

}  // namespace

void add_knn_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("knn", "weighted kNN accuracy of a frozen encoder's features (InstDisc's protocol)");
  auto a = std::make_shared<KnnArgs>();
  a->workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("DATA", a->data, "a dataset root with train/ (the memory bank) and val/ (the queries)")->required();
  add_backbone_flags(cmd, a->backbone);
  cmd->add_option("--k", a->knn.k, "neighbours")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--t", a->knn.temperature, "temperature of the neighbours' weights exp(similarity / t)")
      ->capture_default_str();
  cmd->add_option("--image-size", a->image_size,
                  "evaluation crop side (0: the pretraining's --image-size, else 224)")
      ->capture_default_str();
  cmd->add_option("--high-pass", a->high_pass, "high-pass the inputs: auto (when pretrained with hp), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("-b,--batch-size", a->batch_size, "images per forward (on each rank under mpirun)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-j,--workers", a->workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  add_device_flags(cmd, a->device);
  add_process_flags(cmd, a->processes);
  cmd->add_option("--json", a->json, "also write the result to this JSON file");
  cmd->callback([a] { run_knn(*a); });
}

}  // namespace moco_cli
