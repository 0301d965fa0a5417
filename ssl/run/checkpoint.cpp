// checkpoint.cpp - see checkpoint.h.
#include "ssl/checkpoint.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "engine/check.h"
#include "engine/file_io.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

// SGD's buffers are named after encoder_q's parameters: "optimizer.momentum_buffer.encoder_q.<name>".
constexpr const char* kOptimizerPrefix = "optimizer.momentum_buffer.encoder_q.";
constexpr const char* kSgdPrefix = "momentum_buffer.";

// What must agree between a checkpoint and the run that continues it.
Metadata model_signature(const MocoConfig& c, const RunIdentity& run) {
  return {{"arch", c.arch},
          {"small_stem", c.small_stem ? "true" : "false"},
          {"width", std::to_string(c.width)},
          {"moco_dim", std::to_string(c.dim)},
          {"moco_k", std::to_string(c.queue_size)},
          {"mlp", c.mlp ? "true" : "false"},
          {"batch_size", std::to_string(run.batch_size)},
          {"strategy", run.strategy}};
}

// `m` with the keys early checkpoints did not write yet, at what they meant then: before --width
// existed every encoder had torchvision's width.
Metadata with_legacy_defaults(Metadata m) {
  m.try_emplace("width", std::to_string(MocoConfig{}.width));
  return m;
}

bool metadata_flag(const Metadata& m, const std::string& key, const std::string& path) {
  const std::string text = metadata_text(m, key, path);
  ENGINE_CHECK(text == "true" || text == "false", "{}: the checkpoint's metadata '{}' is '{}', not true or false",
               path, key, text);
  return text == "true";
}

void check_format(const Metadata& m, const std::string& path) {
  constexpr size_t kShown = 60;  // characters of another file's format text in a message
  auto format = m.find("format");
  ENGINE_CHECK(format != m.end() && format->second == kCheckpointFormat,
               "{}: not a `moco pretrain` checkpoint (format '{}', expected '{}')", path,
               format == m.end() ? "none" : format->second.substr(0, kShown), kCheckpointFormat);
}

}  // namespace

int64_t metadata_count(const Metadata& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  ENGINE_CHECK(it != m.end(), "{}: the checkpoint's metadata has no '{}'", path, key);
  try {
    size_t used = 0;
    const int64_t value = std::stoll(it->second, &used);
    if (used == it->second.size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  ENGINE_THROW("{}: the checkpoint's metadata '{}' is '{}', not a count", path, key, it->second);
}

std::string metadata_text(const Metadata& m, const std::string& key, const std::string& path) {
  auto it = m.find(key);
  ENGINE_CHECK(it != m.end(),
               "{}: the checkpoint's metadata has no '{}'; the file was not written by this program's `moco "
               "pretrain` or `moco lincls`, or is damaged",
               path, key);
  return it->second;
}

double metadata_real(const Metadata& m, const std::string& key, const std::string& path) {
  const std::string text = metadata_text(m, key, path);
  try {
    size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  ENGINE_THROW("{}: the checkpoint's metadata '{}' is '{}', not a number", path, key, text);
}

CheckpointArgs checkpoint_args(const Metadata& m, const std::string& path) {
  CheckpointArgs out;
  auto it = m.find("args");
  if (it == m.end()) return out;
  const nlohmann::json args = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  ENGINE_CHECK(args.is_object(), "{}: the checkpoint's metadata 'args' is not a JSON object of the run's flags: '{}'",
               path, it->second.substr(0, 80));
  constexpr int64_t kMaxCount = int64_t{1} << 20;  // far above any batch's groups or image's side
  auto count = [&](const char* key, int64_t& value) {
    const auto found = args.find(key);
    if (found == args.end()) return;
    ENGINE_CHECK(found->is_number_integer() && found->get<int64_t>() >= 1 && found->get<int64_t>() <= kMaxCount,
                 "{}: the checkpoint's args give {} = {}, expected a count from 1 to {}", path, key,
                 found->dump().substr(0, 40), kMaxCount);
    value = found->get<int64_t>();
  };
  count("bn_groups", out.bn_groups);
  count("image_size", out.image_size);
  return out;
}

namespace {
void check_tensor_shape(const SafetensorsFile& file, const std::string& name, const Shape& expected,
                        const std::string& path, const char* says) {
  ENGINE_CHECK(file.contains(name), "{}: has no tensor '{}', which {} needs; the file is damaged or holds another model",
               path, name, says);
  const Shape& found = file.at(name).shape();
  ENGINE_CHECK(found == expected, "{}: tensor '{}' is {} but {} needs {}; the file is damaged or holds another model",
               path, name, shape_str(found), says, shape_str(expected));
}
}  // namespace

void check_resnet_fits_file(const SafetensorsFile& file, const std::string& prefix, int64_t width,
                            const std::string& path) {
  const std::string conv1 = prefix + "conv1.weight";
  ENGINE_CHECK(file.contains(conv1) && file.at(conv1).dim() == 4, "{}: has no 4-d tensor '{}'; not a ResNet", path,
               conv1);
  const int64_t kernel = file.at(conv1).size(2);
  ENGINE_CHECK(kernel == 7 || kernel == 3, "{}: '{}' is {}, expected a 7 x 7 (ImageNet) or 3 x 3 (small) stem", path,
               conv1, shape_str(file.at(conv1).shape()));
  const std::string says = fmt::format("a ResNet of width {}", width);
  check_tensor_shape(file, conv1, {width, 3, kernel, kernel}, path, says.c_str());
  check_tensor_shape(file, prefix + "layer4.0.conv2.weight", {8 * width, 8 * width, 3, 3}, path, says.c_str());
}

PretrainedMoco load_pretrained_moco(const std::string& path, Device device) {
  ENGINE_CHECK(fs::is_regular_file(path),
               "{}: no such checkpoint file; give a `moco pretrain` checkpoint such as "
               "SAVE_DIR/checkpoints/last.safetensors",
               path);
  const SafetensorsFile file = load_safetensors(path);
  const Metadata& m = file.metadata;
  check_format(m, path);
  MocoConfig config;
  config.arch = metadata_text(m, "arch", path);
  const auto& archs = nn::resnet_arch_names();
  ENGINE_CHECK(std::find(archs.begin(), archs.end(), config.arch) != archs.end(),
               "{}: the checkpoint's arch '{}' is not one this program builds", path, config.arch);
  config.small_stem = metadata_flag(m, "small_stem", path);
  config.width = metadata_count(with_legacy_defaults(m), "width", path);
  config.dim = metadata_count(m, "moco_dim", path);
  config.queue_size = metadata_count(m, "moco_k", path);
  config.mlp = metadata_flag(m, "mlp", path);
  // The ghost-BatchNorm groups are a training flag, not part of the model: they are in "args".
  if (const CheckpointArgs args = checkpoint_args(m, path); args.bn_groups > 0) config.bn_groups = args.bn_groups;
  // What the metadata makes us allocate must be there in the file: both encoders' largest weights,
  // the head's last Linear (dim x features) and the queue (dim x K).
  for (const char* encoder : {"encoder_q.", "encoder_k."}) check_resnet_fits_file(file, encoder, config.width, path);
  const int64_t features = nn::resnet_feature_dim({.arch = config.arch, .width = config.width});
  const std::string model = fmt::format("the checkpoint's model ({} of width {}, moco_dim {}, moco_k {})", config.arch,
                                        config.width, config.dim, config.queue_size);
  check_tensor_shape(file, config.mlp ? "encoder_q.fc.2.weight" : "encoder_q.fc.weight", {config.dim, features}, path,
                     model.c_str());
  check_tensor_shape(file, "queue", {config.dim, config.queue_size}, path, model.c_str());
  PretrainedMoco out;
  out.batch_size = metadata_count(m, "batch_size", path);
  out.seed = static_cast<uint64_t>(metadata_count(m, "seed", path));
  auto strategy = m.find("strategy");
  out.strategy = strategy == m.end() ? "none" : strategy->second;
  out.metadata = m;
  // The encoders' shapes come from the checkpoint, so the strict load can only fail on a damaged file.
  out.moco = std::make_shared<MoCo>(config, out.seed, device);
  NamedTensors state;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind(kOptimizerPrefix, 0) != 0) state.emplace_back(name, t);
  out.moco->load_state_dict(state);
  return out;
}

void save_checkpoint(const std::string& path, const MoCo& moco, const nn::Sgd& sgd, const TrainingPosition& position,
                     const RunIdentity& run) {
  NamedTensors tensors = moco.state_dict();
  for (const auto& [name, t] : sgd.state_dict())
    tensors.emplace_back(kOptimizerPrefix + name.substr(std::string(kSgdPrefix).size()), t);
  Metadata metadata = model_signature(moco.config(), run);
  metadata["format"] = kCheckpointFormat;
  metadata["epoch"] = std::to_string(position.epoch);
  metadata["batch"] = std::to_string(position.batch);
  metadata["step"] = std::to_string(position.step);
  metadata["sgd_steps"] = std::to_string(sgd.steps());
  metadata["seed"] = std::to_string(run.seed);
  metadata["args"] = run.args_json;
  metadata["rng"] =
      "counter-based Philox: data draws from (seed, epoch, dataset index), shuffle BN from (seed, step); the seed "
      "and the position restore them";
  save_safetensors(path, tensors, metadata);
}

TrainingPosition load_checkpoint(const std::string& path, MoCo& moco, nn::Sgd& sgd, const RunIdentity& run) {
  const SafetensorsFile file = load_safetensors(path);
  const Metadata& m = file.metadata;
  check_format(m, path);
  std::string differences;
  const Metadata written = with_legacy_defaults(m);
  for (const auto& [key, expected] : model_signature(moco.config(), run)) {
    auto it = written.find(key);
    const std::string found = it != written.end() ? it->second : "absent";
    if (found != expected) differences += fmt::format("\n  {}: checkpoint {}, this run {}", key, found, expected);
  }
  ENGINE_CHECK(differences.empty(),
               "{}: the checkpoint was made with other flags than this run's, so it cannot be continued:{}\nrun "
               "with the checkpoint's flags (its 'args' metadata lists them: moco info {})",
               path, differences, path);
  NamedTensors model, optimizer;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0)
      optimizer.emplace_back(kSgdPrefix + name.substr(std::string(kOptimizerPrefix).size()), t);
    else
      model.emplace_back(name, t);
  }
  moco.load_state_dict(model);
  sgd.load_state_dict(optimizer, metadata_count(m, "sgd_steps", path));
  return {metadata_count(m, "epoch", path), metadata_count(m, "batch", path), metadata_count(m, "step", path)};
}

void publish_as_last(const std::string& path, const std::string& last) {
  const std::string tmp = last + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(path, tmp, ec);
  if (ec) {
    // A file system without hard links: copy, still atomically.
    fs::copy_file(path, tmp, fs::copy_options::overwrite_existing, ec);
    ENGINE_CHECK(!ec, "could not copy {} to {}: {}", path, tmp, ec.message());
  }
  fs::rename(tmp, last, ec);
  ENGINE_CHECK(!ec, "could not rename {} to {}: {}", tmp, last, ec.message());
}

std::string resolve_resume(const std::string& resume, const std::string& save_dir) {
  if (resume.empty()) return "";
  if (resume == "auto") {
    const fs::path last = fs::path(save_dir) / "checkpoints" / "last.safetensors";
    return fs::exists(last) ? last.string() : "";
  }
  ENGINE_CHECK(fs::is_regular_file(resume),
               "--resume {}: no such checkpoint file; give a file such as SAVE_DIR/checkpoints/last.safetensors, "
               "or 'auto'",
               resume);
  return resume;
}

}  // namespace engine::ssl
