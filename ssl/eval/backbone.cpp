// backbone.cpp - see backbone.h.
#include "ssl/backbone.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "engine/check.h"
#include "ssl/checkpoint.h"

namespace engine::ssl {

namespace {

void freeze(nn::ResNet& net) {
  net.eval();
  for (Tensor& p : net.parameters()) p.requires_grad_(false);
}

SafetensorsFile read_resnet_file(const std::string& path, const std::string& flag) {
  ENGINE_CHECK(std::filesystem::is_regular_file(path),
               "{}{}: no such file; give a `moco pretrain` checkpoint or a ResNet state dict in safetensors with "
               "torchvision's names (tools/convert_torchvision_resnet.py converts a .pth)",
               flag, path);
  return load_safetensors(path);
}

// The frozen ResNet held by `file` (read from `path`).
std::shared_ptr<nn::ResNet> resnet_from_file(const SafetensorsFile& file, const std::string& path, Device device,
                                             const std::string& flag) {
  // A `moco pretrain` checkpoint holds the encoders under encoder_q. / encoder_k.; torchvision's
  // file is the bare model.
  const bool checkpoint = file.contains("encoder_q.conv1.weight");
  const std::string prefix = checkpoint ? "encoder_q." : "";
  std::map<std::string, Tensor> backbone;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string key = name.substr(prefix.size());
    if (key.rfind("fc.", 0) != 0) backbone.emplace(key, t);
  }
  ENGINE_CHECK(backbone.count("conv1.weight") && backbone.at("conv1.weight").dim() == 4,
               "{}{}: not a ResNet state dict (no conv1.weight{}); expected torchvision's names (conv1.weight, "
               "layer1.0.conv1.weight, ...) or a `moco pretrain` checkpoint",
               flag, path, checkpoint ? " under encoder_q." : "");
  const Tensor& conv1 = backbone.at("conv1.weight");  // (width, 3, 7, 7), or 3 x 3 for the small stem
  check_resnet_fits_file(file, prefix, conv1.size(0), flag + path);
  nn::ResNetConfig rc;
  rc.arch = backbone.count("layer1.0.conv3.weight") ? "resnet50"
                                                    : (backbone.count("layer3.5.conv1.weight") ? "resnet34" : "resnet18");
  rc.stem = conv1.size(2) == 3 ? nn::ResNetStem::SmallImage : nn::ResNetStem::ImageNet;
  rc.width = conv1.size(0);
  auto model = nn::make_resnet(rc, 0);
  // The head is not used: keep the model's own fc, so a strict load checks every backbone key.
  NamedTensors state;
  for (const auto& [name, t] : model->state_dict()) {
    if (name.rfind("fc.", 0) == 0) {
      state.emplace_back(name, t);
    } else if (auto it = backbone.find(name); it != backbone.end()) {
      state.emplace_back(name, it->second);
      backbone.erase(it);
    }
  }
  for (const auto& [name, t] : backbone) state.emplace_back(name, t);  // unexpected: the load lists them
  model->load_state_dict(state);
  model->to(device);
  freeze(*model);
  return model;
}

}  // namespace

std::shared_ptr<nn::ResNet> load_resnet_file(const std::string& path, Device device, const std::string& flag) {
  return resnet_from_file(read_resnet_file(path, flag), path, device, flag);
}

Backbone load_backbone(const BackboneSpec& spec, Device device) {
  Backbone out;
  if (spec.pretrained == kRandomBackbone) {
    out.net = nn::make_resnet(spec.random_config, spec.random_seed);
    out.net->to(device);
    freeze(*out.net);
    out.description = fmt::format("random init ({}{}, width {}, seed {})", spec.random_config.arch,
                                  spec.random_config.stem == nn::ResNetStem::SmallImage ? ", small stem" : "",
                                  spec.random_config.width, spec.random_seed);
    return out;
  }
  ENGINE_CHECK(!spec.pretrained.empty(),
               "--pretrained: give a `moco pretrain` checkpoint, a torchvision-named ResNet safetensors file, or "
               "'random' for a randomly initialised encoder");
  const std::string flag = "--pretrained ";
  const SafetensorsFile file = read_resnet_file(spec.pretrained, flag);
  out.net = resnet_from_file(file, spec.pretrained, device, flag);
  out.description = spec.pretrained;
  if (file.metadata.count("format") && file.metadata.at("format") == kCheckpointFormat) {
    if (auto it = file.metadata.find("strategy"); it != file.metadata.end()) out.strategy = it->second;
    out.image_size = checkpoint_args(file.metadata, spec.pretrained).image_size;
    out.description = fmt::format("{} (encoder_q after {} steps, epoch {})", spec.pretrained,
                                  file.metadata.count("step") ? file.metadata.at("step") : "?",
                                  file.metadata.count("epoch") ? file.metadata.at("epoch") : "?");
  }
  return out;
}

int64_t evaluation_image_size(int64_t requested, const Backbone& backbone) {
  if (requested > 0) return requested;
  return backbone.image_size > 0 ? backbone.image_size : 224;
}

bool evaluation_high_pass(const std::string& requested, const Backbone& backbone) {
  if (requested == "on") return true;
  if (requested == "off") return false;
  return backbone.strategy == "hp";  // METHOD.md 9: HP appended to both transforms for hp backbones
}

FrozenStateCheck::FrozenStateCheck(const nn::Module& module) {
  for (const auto& [name, t] : module.state_dict()) copy_.emplace_back(name, t.to(Device::cpu()).contiguous().clone());
}

std::vector<std::string> FrozenStateCheck::changed(const nn::Module& module) const {
  std::vector<std::string> names;
  const NamedTensors now = module.state_dict();
  ENGINE_CHECK(now.size() == copy_.size(), "frozen check: the module has {} tensors, the copy {}", now.size(),
               copy_.size());
  for (size_t i = 0; i < now.size(); ++i) {
    const Tensor a = now[i].second.to(Device::cpu()).contiguous();
    const Tensor& b = copy_[i].second;
    const size_t bytes = static_cast<size_t>(b.numel()) * dtype_size(b.dtype());
    if (a.shape() != b.shape() || a.dtype() != b.dtype() || std::memcmp(a.data_ptr(), b.data_ptr(), bytes) != 0)
      names.push_back(now[i].first);
  }
  return names;
}

}  // namespace engine::ssl
