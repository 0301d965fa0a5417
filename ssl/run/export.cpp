// export.cpp - see export.h.
#include "ssl/run/export.h"

#include <fmt/format.h>

#include "engine/check.h"
#include "engine/log.h"
#include "ssl/methods/method.h"
#include "ssl/run/checkpoint.h"
#include "ssl/run/resnet_file.h"

namespace engine::ssl {

namespace {

constexpr int64_t kTorchvisionWidth = 64;  // torchvision's ResNet: stem 64, stages 64/128/256/512 planes

// Every occurrence of `from` in `s` replaced by `to`, left to right (Python's str.replace, which
// MoCo's script uses).
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// `file` with a zero num_batches_tracked for every BatchNorm under `prefix` that has running
// statistics but no counter: what PyTorch's BatchNorm loads for a state dict without them. Returns
// how many were added.
int64_t add_missing_batch_counters(SafetensorsFile& file, const std::string& prefix) {
  const std::string stats = ".running_mean";
  NamedTensors added;
  for (const auto& [name, t] : file.tensors) {
    if (!name.starts_with(prefix) || !name.ends_with(stats)) continue;
    const std::string counter = name.substr(0, name.size() - stats.size()) + ".num_batches_tracked";
    if (!file.contains(counter)) added.emplace_back(counter, Tensor::zeros({}, DType::i64));
  }
  file.tensors.insert(file.tensors.end(), added.begin(), added.end());
  return static_cast<int64_t>(added.size());
}

// The change torchvision's constructor needs to hold `config`, or "" when torchvision.models.<arch>()
// holds it as it is.
std::string torchvision_mismatch(const nn::ResNetConfig& config) {
  std::string needs;
  if (config.width != kTorchvisionWidth)
    needs += fmt::format(
        " torchvision's ResNet fixes the width at 64 (stem of 64 channels, stages of 64/128/256/512 planes) but this "
        "one has width {}, so it needs a ResNet class built with planes {}/{}/{}/{} (and inplanes {}), since no "
        "argument of torchvision.models.{}() sets them;",
        config.width, config.width, 2 * config.width, 4 * config.width, 8 * config.width, config.width, config.arch);
  if (config.stem == nn::ResNetStem::SmallImage)
    needs += fmt::format(
        " it has the small-image stem (3x3 stride-1 conv1, no max-pool): after constructing the model set "
        "model.conv1 = torch.nn.Conv2d(3, {}, 3, 1, 1, bias=False) and model.maxpool = torch.nn.Identity() "
        "before load_state_dict (detectron2's stem is the 7x7 one and needs the same change);",
        config.width);
  if (needs.empty()) return needs;
  needs.pop_back();
  return fmt::format("this {} is not what torchvision.models.{}() builds:{}", config.arch, config.arch, needs);
}

}  // namespace

ExportFormat parse_export_format(const std::string& text) {
  if (text == "torchvision") return ExportFormat::Torchvision;
  if (text == "detectron2") return ExportFormat::Detectron2;
  ENGINE_THROW("--format '{}' is not an export format; expected torchvision (torchvision's names) or detectron2 "
               "(the names of MoCo's convert-pretrain-to-detectron2.py)",
               text.substr(0, 60));
}

const char* export_format_name(ExportFormat format) {
  return format == ExportFormat::Detectron2 ? "detectron2" : "torchvision";
}

std::string detectron2_name(const std::string& torchvision_key) {
  std::string k = torchvision_key;
  if (k.find("layer") == std::string::npos) k = "stem." + k;
  for (int t = 1; t <= 4; ++t) k = replace_all(k, fmt::format("layer{}", t), fmt::format("res{}", t + 1));
  for (int t = 1; t <= 3; ++t) k = replace_all(k, fmt::format("bn{}", t), fmt::format("conv{}.norm", t));
  k = replace_all(k, "downsample.0", "shortcut");
  k = replace_all(k, "downsample.1", "shortcut.norm");
  return k;
}

ExportedBackbone export_backbone(const std::string& path, ExportFormat format) {
  SafetensorsFile file = read_resnet_file(path, "");
  const std::string prefix = resnet_prefix(file);
  const int64_t filled = add_missing_batch_counters(file, prefix);
  // Shapes are checked before the model is built, and every backbone key must be there and fit it.
  const std::shared_ptr<nn::ResNet> model = frozen_resnet_from_file(file, path, Device::cpu(), "");
  const nn::ResNetConfig& config = model->config();

  ExportedBackbone out;
  out.arch = config.arch;
  Metadata& m = out.metadata;
  m["export_format"] = export_format_name(format);
  m["arch"] = config.arch;
  m["width"] = std::to_string(config.width);
  m["small_stem"] = config.stem == nn::ResNetStem::SmallImage ? "true" : "false";
  m["source_file"] = path;
  const auto format_tag = file.metadata.find("format");
  if (format_tag != file.metadata.end() && format_tag->second == kCheckpointFormat) {
    const Method method = checkpoint_method(file.metadata, path);
    m["method"] = method_name(method);
    m["epoch"] = std::to_string(metadata_count(file.metadata, "epoch", path));
    m["step"] = std::to_string(metadata_count(file.metadata, "step", path));
    out.source = fmt::format("{} of a {} checkpoint (epoch {}, step {})", prefix.substr(0, prefix.size() - 1),
                             method_name(method), m["epoch"], m["step"]);
  } else if (!prefix.empty()) {
    out.source = fmt::format("the tensors under {} (not a `moco pretrain` checkpoint)", prefix);
  } else {
    out.source = "a ResNet with torchvision's names";
  }
  m["source"] = out.source;
  m["excluded"] = format == ExportFormat::Detectron2
                      ? "fc.* (the projection head or classifier; MoCo's script keeps it as stem.fc.*, which "
                        "detectron2 ignores)"
                      : "fc.* (the projection head or classifier): load with strict=False; torchvision then reports "
                        "only fc.weight and fc.bias missing";
  m["layout"] = "PyTorch's: OIHW convolution weights; f32 parameters and running statistics, i64 num_batches_tracked";
  if (filled > 0)
    m["num_batches_tracked"] = fmt::format("{} counters the source lacked written as 0 (what PyTorch loads then)", filled);
  if (format == ExportFormat::Detectron2) {
    // What MoCo's conversion script puts beside "model" in its pickle.
    m["__author__"] = "MOCO";
    m["matching_heuristics"] = "True";
  }
  if (const std::string mismatch = torchvision_mismatch(config); !mismatch.empty()) {
    m["warning"] = mismatch;
    log_warning("moco export: {}: {}", path, mismatch);
  }

  for (const auto& [name, t] : model->state_dict()) {
    if (name.starts_with("fc.")) continue;
    const Tensor value = t.dtype() == DType::i64 ? t : t.to(DType::f32);
    out.tensors.emplace_back(format == ExportFormat::Detectron2 ? detectron2_name(name) : name, value);
  }
  return out;
}

void write_export(const std::string& out, const ExportedBackbone& exported) {
  save_safetensors(out, exported.tensors, exported.metadata);
}

}  // namespace engine::ssl
