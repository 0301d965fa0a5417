// cmd_embed.cpp - `moco embed IMAGES --pretrained CKPT|W.safetensors --out E.safetensors`: one vector
// per image from a frozen encoder (ssl/eval/embedding.h, the code the installed library runs too),
// written as one f32 tensor `embeddings` (N x D) in safetensors, or a NumPy .npy with --npy, and
// beside it OUT.paths.txt, the N image paths (absolute) in row order, one per line. Unreadable
// images are named and skipped; the command fails only when none could be embedded.
#include <fmt/format.h>

#include <filesystem>
#include <thread>

#include "data/image_list.h"
#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/log.h"
#include "engine/npy.h"
#include "engine/precision.h"
#include "engine/progress.h"
#include "engine/serialize.h"
#include "ssl/eval/embedding.h"
#include "tools/backbone_flags.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace moco_cli {

namespace {

struct EmbedArgs {
  std::string images;
  BackboneFlags backbone;
  std::string out;
  std::string output = "features";
  bool normalize = false;
  bool npy = false;
  int64_t image_size = 0;
  std::string high_pass = "auto";
  int64_t batch_size = 64;
  int workers = 1;
  DeviceFlags device;
};

// The paths file cannot list a name that holds a line break: such files are skipped up front.
std::vector<std::string> listable(std::vector<std::string> paths) {
  std::erase_if(paths, [](const std::string& p) {
    if (p.find('\n') == std::string::npos) return false;
    engine::log_warning("embed: skipped a file whose name holds a line break (OUT.paths.txt lists one path per "
                        "line): '{}'", p);
    return true;
  });
  return paths;
}

void run_embed(const EmbedArgs& a) {
  namespace fs = std::filesystem;
  const fs::path out_dir = fs::path(a.out).parent_path();
  ENGINE_CHECK(out_dir.empty() || fs::is_directory(out_dir), "--out {}: the folder '{}' does not exist; create it first",
               a.out, out_dir.string());
  const std::string paths_file = a.out + ".paths.txt";
  for (const std::string& file : {a.out, paths_file})
    ENGINE_CHECK(!fs::is_directory(file), "--out {}: '{}' is a folder; give a file name such as {}/embeddings.safetensors",
                 a.out, file, file);
  const std::vector<std::string> paths = listable(engine::data::list_image_files(a.images));

  engine::ssl::EmbedderOptions o;
  o.backbone = a.backbone.spec();
  o.output = engine::ssl::parse_embedding_output(a.output);
  o.normalize = a.normalize;
  o.image_size = a.image_size;
  o.high_pass = engine::ssl::parse_high_pass(a.high_pass);
  o.batch_size = a.batch_size;
  o.workers = a.workers;
  o.device = a.device.resolve();
  o.precision = engine::parse_precision(a.device.precision);
  const engine::ssl::Embedder embedder(o);
  fmt::print("embed: {} images from {}\n  encoder {} on {}, {} ({}{})\n  {}\n", paths.size(), a.images,
             embedder.description(), o.device.str(), engine::ssl::embedding_output_name(o.output), embedder.dim(),
             o.normalize ? ", L2-normalised" : "", embedder.preprocessing_text());
  std::fflush(stdout);

  const int64_t batches = (static_cast<int64_t>(paths.size()) + a.batch_size - 1) / a.batch_size;
  engine::ProgressLine progress("embed", batches);
  const auto start = std::chrono::steady_clock::now();
  const engine::ssl::FileEmbeddings result = embedder.embed_files(paths, [&](int64_t done, int64_t) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    progress.update((done + a.batch_size - 1) / a.batch_size,
                    {{"", fmt::format("{:.1f} img/s", seconds > 0 ? done / seconds : 0.0)}});
  });
  progress.finish();
  ENGINE_CHECK(!result.paths.empty(), "embed: none of the {} images of {} could be decoded (each is named above); "
               "nothing was written", paths.size(), a.images);

  const int64_t rows = result.embeddings.size(0);
  if (a.npy) {
    engine::save_npy(a.out, result.embeddings);
  } else {
    const engine::Metadata metadata = {
        {"format", "moco-embeddings/1"},
        {"encoder", embedder.description()},
        {"output", engine::ssl::embedding_output_name(o.output)},
        {"normalized", o.normalize ? "true" : "false"},
        {"preprocessing", embedder.preprocessing_text()},
        {"images", std::to_string(rows)},
        {"skipped", std::to_string(result.skipped.size())},
        {"paths", fs::path(paths_file).filename().string()}};
    engine::save_safetensors(a.out, {{"embeddings", result.embeddings}}, metadata);
  }
  // Absolute paths: the list reads the same from any folder, and `moco embed` takes it back as IMAGES.
  std::string listing;
  for (const std::string& p : result.paths) listing += fs::absolute(p).lexically_normal().string() + "\n";
  engine::write_file_atomic(paths_file, listing);
  fmt::print("embed: wrote {} x {} to {} and the paths to {}{}\n", rows, embedder.dim(), a.out, paths_file,
             result.skipped.empty() ? "" : fmt::format("; {} unreadable images skipped (named above)",
                                                       result.skipped.size()));
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("embed", "one vector per image from a frozen encoder, for search, clustering or "
                                          "a classifier of your own");
  auto a = std::make_shared<EmbedArgs>();
  a->workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cmd->add_option("IMAGES", a->images,
                  "a folder of images (walked recursively; an image folder dataset is one), one image, or a text "
                  "file with one image path per line (relative to the file's folder)")
      ->required();
  add_backbone_flags(cmd, a->backbone);
  cmd->add_option("--out", a->out, "the embeddings file (N x D f32 'embeddings'); OUT.paths.txt lists the images")
      ->required();
  cmd->add_option("--output", a->output,
                  "features: the pooled backbone features; projection: the pretraining head's output (checkpoints)")
      ->capture_default_str()
      ->check(CLI::IsMember({"features", "projection"}));
  cmd->add_flag("--normalize", a->normalize, "L2-normalise each embedding (dot products are then cosines)");
  cmd->add_flag("--npy", a->npy, "write a NumPy .npy instead of safetensors");
  cmd->add_option("--image-size", a->image_size, "the crop side (0: the pretraining's --image-size, else 224)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  cmd->add_option("--high-pass", a->high_pass, "high-pass the inputs: auto (when pretrained with hp), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("-b,--batch-size", a->batch_size, "images per forward")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-j,--workers", a->workers, "decoding threads")->capture_default_str()->check(CLI::Range(1, 256));
  add_device_flags(cmd, a->device);
  cmd->callback([a] { run_embed(*a); });
}

}  // namespace moco_cli
