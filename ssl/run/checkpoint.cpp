// checkpoint.cpp - see checkpoint.h.
#include "ssl/run/checkpoint.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/log.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/simclr.h"
#include "ssl/methods/supervised.h"
#include "ssl/run/resnet_file.h"

namespace engine::ssl {

namespace fs = std::filesystem;

namespace {

// The optimizer's buffers are named after the online encoder's parameters:
// "optimizer.momentum_buffer.<online prefix><name>".
constexpr const char* kOptimizerPrefix = "optimizer.momentum_buffer.";
constexpr const char* kBufferPrefix = "momentum_buffer.";  // nn::Optimizer::state_dict's names

// What must agree between a checkpoint and the run that continues it.
Metadata model_signature(const ContrastiveMethod& method, const RunIdentity& run) {
  Metadata m = method.model_metadata();
  m["batch_size"] = std::to_string(run.batch_size);
  m["strategy"] = mask_strategy_name(run.strategy);
  m["optimizer"] = run.optimizer;
  m["bn_groups_total"] = std::to_string(run.bn_groups_total);
  return m;
}

// `m` with the keys early checkpoints did not write yet, at what they meant then: before --width
// existed every encoder had torchvision's width; before SimCLR every run was MoCo v2 with SGD.
// Before distributed runs, every run was one process and its groups were --bn-groups.
Metadata with_legacy_defaults(Metadata m, const std::string& path) {
  m.try_emplace("width", std::to_string(MocoConfig{}.width));
  m.try_emplace("method", method_name(Method::MocoV2));
  m.try_emplace("optimizer", "sgd");
  if (!m.count("bn_groups_total"))  // --bn-groups from "args", and one group for a file without args
    m["bn_groups_total"] = std::to_string(std::max<int64_t>(1, checkpoint_args(m, path).bn_groups));
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
               "{}: not a `moco pretrain` checkpoint (format '{}', expected '{}', which `moco supervised` writes too)",
               path, format == m.end() ? "none" : format->second.substr(0, kShown), kCheckpointFormat);
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
  const auto precision = args.find("precision");
  if (precision != args.end()) {
    ENGINE_CHECK(precision->is_string(), "{}: the checkpoint's args give precision = {}, expected fp32, tf32 or bf16",
                 path, precision->dump().substr(0, 40));
    out.precision = precision->get<std::string>();
  }
  return out;
}



Method checkpoint_method(const Metadata& m, const std::string& path) {
  const std::string name = metadata_text(with_legacy_defaults(m, path), "method", path);
  ENGINE_CHECK(name == "mocov2" || name == "simclr" || name == "supervised",
               "{}: the checkpoint's method '{}' is not one this program trains (mocov2, simclr, supervised)", path,
               name.substr(0, 60));
  return method_from_name(name);
}

MaskStrategy checkpoint_strategy(const Metadata& m, const std::string& path) {
  auto it = m.find("strategy");
  if (it == m.end()) return MaskStrategy::None;
  for (const MaskStrategy s : {MaskStrategy::None, MaskStrategy::Hp, MaskStrategy::Blur, MaskStrategy::Mean})
    if (it->second == mask_strategy_name(s)) return s;
  ENGINE_THROW("{}: the checkpoint's metadata 'strategy' is '{}', not none, hp, blur or mean; the file is damaged", path,
               it->second.substr(0, 60));
}

PretrainedRun load_pretrained(const std::string& path, Device device) {
  ENGINE_CHECK(fs::is_regular_file(path),
               "{}: no such checkpoint file; give a `moco pretrain` or `moco supervised` checkpoint such as "
               "SAVE_DIR/checkpoints/last.safetensors",
               path);
  const SafetensorsFile file = load_safetensors(path);
  const Metadata& m = file.metadata;
  check_format(m, path);
  const Method method = checkpoint_method(m, path);
  EncoderShape shape;
  shape.arch = metadata_text(m, "arch", path);
  const auto& archs = nn::resnet_arch_names();
  ENGINE_CHECK(std::find(archs.begin(), archs.end(), shape.arch) != archs.end(),
               "{}: the checkpoint's arch '{}' is not one this program builds", path, shape.arch);
  shape.small_stem = metadata_flag(m, "small_stem", path);
  shape.width = metadata_count(with_legacy_defaults(m, path), "width", path);
  // The head's outputs: the embedding, or the classifier's classes.
  const char* outputs = method == Method::SimClr       ? "simclr_dim"
                        : method == Method::Supervised ? "num_classes"
                                                       : "moco_dim";
  shape.dim = metadata_count(m, outputs, path);
  shape.mlp = method != Method::Supervised && metadata_flag(m, "mlp", path);
  // The ghost-BatchNorm groups are a training flag, not part of the model: the global batch's count
  // (processes x --bn-groups, what one process replays), or for older files --bn-groups in "args".
  checkpoint_args(m, path);  // refuses args that are not the run's flags, whatever the file's age
  const int64_t bn_groups = metadata_count(with_legacy_defaults(m, path), "bn_groups_total", path);
  ENGINE_CHECK(bn_groups >= 1 && bn_groups <= (int64_t{1} << 20),
               "{}: the checkpoint's bn_groups_total {} is not a count of BatchNorm groups", path, bn_groups);
  // What the metadata makes us allocate must be there in the file: every encoder's largest
  // weights, the head's last Linear (dim x features) and MoCo's queue (dim x K).
  const std::vector<std::string> encoders = method == Method::MocoV2
                                                 ? std::vector<std::string>{"encoder_q.", "encoder_k."}
                                                 : std::vector<std::string>{"encoder."};
  for (const std::string& encoder : encoders) check_resnet_fits_file(file, encoder, shape.width, path);
  ENGINE_CHECK(method != Method::SimClr || shape.mlp,
               "{}: a SimCLR checkpoint always has the MLP head, but its metadata says mlp false; the file is damaged",
               path);
  const int64_t features = nn::resnet_feature_dim({.arch = shape.arch, .width = shape.width});
  const std::string head = std::string(online_prefix(method)) + (shape.mlp ? "fc.2.weight" : "fc.weight");
  PretrainedRun out;
  out.batch_size = metadata_count(m, "batch_size", path);
  out.seed = static_cast<uint64_t>(metadata_count(m, "seed", path));
  out.strategy = checkpoint_strategy(m, path);
  out.metadata = m;
  if (method == Method::Supervised) {
    const std::string model = fmt::format("the checkpoint's model ({} of width {}, num_classes {})", shape.arch,
                                          shape.width, shape.dim);
    check_tensor_shape(file, head, {shape.dim, features}, path, model.c_str());
    SupervisedConfig config;
    config.arch = shape.arch;
    config.small_stem = shape.small_stem;
    config.width = shape.width;
    config.num_classes = shape.dim;
    config.bn_groups = bn_groups;
    out.method = std::make_shared<Supervised>(config, out.seed, device);
  } else if (method == Method::SimClr) {
    const std::string model = fmt::format("the checkpoint's model ({} of width {}, simclr_dim {})", shape.arch,
                                          shape.width, shape.dim);
    check_tensor_shape(file, head, {shape.dim, features}, path, model.c_str());
    SimclrConfig config;
    config.arch = shape.arch;
    config.small_stem = shape.small_stem;
    config.width = shape.width;
    config.dim = shape.dim;
    config.bn_groups = bn_groups;
    out.method = std::make_shared<SimCLR>(config, out.seed, device);
  } else {
    MocoConfig config;
    config.arch = shape.arch;
    config.small_stem = shape.small_stem;
    config.width = shape.width;
    config.dim = shape.dim;
    config.mlp = shape.mlp;
    config.queue_size = metadata_count(m, "moco_k", path);
    config.bn_groups = bn_groups;
    const std::string model = fmt::format("the checkpoint's model ({} of width {}, moco_dim {}, moco_k {})",
                                          config.arch, config.width, config.dim, config.queue_size);
    check_tensor_shape(file, head, {config.dim, features}, path, model.c_str());
    check_tensor_shape(file, "queue", {config.dim, config.queue_size}, path, model.c_str());
    out.method = std::make_shared<MoCo>(config, out.seed, device);
  }
  // The networks' shapes come from the checkpoint, so the strict load can only fail on a damaged file.
  NamedTensors state;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind(kOptimizerPrefix, 0) != 0) state.emplace_back(name, t);
  out.method->load_state_dict(state);
  return out;
}

void save_checkpoint(const std::string& path, const ContrastiveMethod& method, const nn::Optimizer& optimizer,
                     const TrainingPosition& position, const RunIdentity& run) {
  NamedTensors tensors = method.state_dict();
  const std::string buffers = std::string(kOptimizerPrefix) + online_prefix(method.method());
  for (const auto& [name, t] : optimizer.state_dict())
    tensors.emplace_back(buffers + name.substr(std::string(kBufferPrefix).size()), t);
  Metadata metadata = model_signature(method, run);
  metadata["format"] = kCheckpointFormat;
  metadata["epoch"] = std::to_string(position.epoch);
  metadata["batch"] = std::to_string(position.batch);
  metadata["step"] = std::to_string(position.step);
  metadata["sgd_steps"] = std::to_string(optimizer.steps());
  metadata["seed"] = std::to_string(run.seed);
  metadata["world_size"] = std::to_string(run.world_size);
  metadata["args"] = run.args_json;
  metadata["rng"] =
      "counter-based Philox: data draws from (seed, epoch, dataset index), shuffle BN and masks from (seed, step); "
      "the seed and the position restore them";
  save_safetensors(path, tensors, metadata);
}

TrainingPosition load_checkpoint(const std::string& path, ContrastiveMethod& method, nn::Optimizer& optimizer,
                                 const RunIdentity& run) {
  const SafetensorsFile file = load_safetensors(path);
  const Metadata& m = file.metadata;
  check_format(m, path);
  std::string differences;
  const Metadata written = with_legacy_defaults(m, path);
  for (const auto& [key, expected] : model_signature(method, run)) {
    auto it = written.find(key);
    const std::string found = it != written.end() ? it->second : "absent";
    if (found != expected) differences += fmt::format("\n  {}: checkpoint {}, this run {}", key, found, expected);
    if (found != expected && key == "bn_groups_total")
      differences += fmt::format(" (the BatchNorm groups of the global batch, processes x --bn-groups: resume with "
                                 "W processes, mpirun -np W, and --bn-groups G where W x G = {})",
                                 found);
  }
  const Method written_method = checkpoint_method(m, path);
  if (written_method != method.method()) {
    const std::string command = written_method == Method::Supervised
                                    ? std::string("moco supervised")
                                    : fmt::format("moco pretrain --method {}", method_name(written_method));
    differences += fmt::format("\n  (a {} checkpoint continues with `{}`)", method_name(written_method), command);
  }
  ENGINE_CHECK(differences.empty(),
               "{}: the checkpoint was made with other flags than this run's, so it cannot be continued:{}\nrun "
               "with the checkpoint's flags (its 'args' metadata lists them: moco info {})",
               path, differences, path);
  // Another --precision continues from the same f32 weights and optimizer state, but no longer as
  // the interrupted run would have (bf16 rounds elsewhere than fp32): said, not refused.
  const std::string was = checkpoint_args(m, path).precision;
  const std::string now =
      run.args_json.empty() ? CheckpointArgs{}.precision : checkpoint_args({{"args", run.args_json}}, "this run").precision;
  if (was != now)
    log_warning("{}: the checkpoint was trained with --precision {} and this run continues it in {}; the weights "
                "carry over (they are f32 either way), but the run no longer follows the interrupted one bit for "
                "bit",
                path, was, now);
  NamedTensors model, buffers;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) {
      const std::string parameter = name.substr(std::string(kOptimizerPrefix).size());
      ENGINE_CHECK(parameter.rfind(online_prefix(method.method()), 0) == 0,
                   "{}: optimizer state '{}' does not belong to the {} encoder; the file is damaged", path, name,
                   online_prefix(method.method()));
      buffers.emplace_back(kBufferPrefix + parameter.substr(std::string(online_prefix(method.method())).size()), t);
    } else {
      model.emplace_back(name, t);
    }
  }
  method.load_state_dict(model);
  optimizer.load_state_dict(buffers, metadata_count(m, "sgd_steps", path));
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

}  // namespace engine::ssl
