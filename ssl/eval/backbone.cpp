// backbone.cpp - see backbone.h.
#include "ssl/eval/backbone.h"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "engine/check.h"
#include "ssl/masking/masking.h"
#include "ssl/run/checkpoint.h"
#include "ssl/run/resnet_file.h"

namespace engine::ssl {

Backbone load_backbone(const BackboneSpec& spec, Device device) {
  Backbone out;
  if (spec.pretrained == kRandomBackbone) {
    out.net = nn::make_resnet(spec.random_config, spec.random_seed);
    out.net->to(device);
    out.net->set_activations(activation_format(spec.precision, device));
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
  out.net = frozen_resnet_from_file(file, spec.pretrained, device, flag);
  out.net->set_activations(activation_format(spec.precision, device));
  out.description = spec.pretrained;
  if (file.metadata.count("format") && file.metadata.at("format") == kCheckpointFormat) {
    out.trained_on_high_pass = checkpoint_strategy(file.metadata, spec.pretrained) == MaskStrategy::Hp;
    out.image_size = checkpoint_args(file.metadata, spec.pretrained).image_size;
    const Method method = checkpoint_method(file.metadata, spec.pretrained);
    out.description = fmt::format("{} ({} after {} steps, epoch {})", spec.pretrained,
                                  online_encoder_description(method),
                                  file.metadata.count("step") ? file.metadata.at("step") : "?",
                                  file.metadata.count("epoch") ? file.metadata.at("epoch") : "?");
  }
  return out;
}

int64_t evaluation_image_size(int64_t requested, const Backbone& backbone) {
  if (requested > 0) return requested;
  return backbone.image_size > 0 ? backbone.image_size : 224;
}

HighPass parse_high_pass(const std::string& text) {
  if (text == "auto") return HighPass::Auto;
  if (text == "on") return HighPass::On;
  if (text == "off") return HighPass::Off;
  ENGINE_THROW("--high-pass: expected auto, on or off, found '{}'", text.substr(0, 60));
}

bool evaluation_high_pass(HighPass requested, const Backbone& backbone) {
  if (requested == HighPass::On) return true;
  if (requested == HighPass::Off) return false;
  return backbone.trained_on_high_pass;  // METHOD.md 9: HP appended to both transforms for hp backbones
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
