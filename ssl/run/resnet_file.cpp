// resnet_file.cpp - see resnet_file.h.
#include "ssl/run/resnet_file.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>

#include "engine/check.h"

namespace engine::ssl {

void freeze(nn::Module& net) {
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

std::string resnet_prefix(const SafetensorsFile& file) {
  // A checkpoint holds its online encoder under encoder_q. (MoCo v2) or encoder. (SimCLR,
  // supervised); torchvision's file is the bare model.
  return file.contains("encoder_q.conv1.weight") ? "encoder_q."
         : file.contains("encoder.conv1.weight") ? "encoder."
                                                 : "";
}

std::shared_ptr<nn::ResNet> frozen_resnet_from_file(const SafetensorsFile& file, const std::string& path,
                                                    Device device, const std::string& flag) {
  const std::string prefix = resnet_prefix(file);
  const bool checkpoint = !prefix.empty();
  std::map<std::string, Tensor> backbone;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string key = name.substr(prefix.size());
    if (key.rfind("fc.", 0) != 0) backbone.emplace(key, t);
  }
  ENGINE_CHECK(backbone.count("conv1.weight") && backbone.at("conv1.weight").dim() == 4,
               "{}{}: not a ResNet state dict (no conv1.weight{}); expected torchvision's names (conv1.weight, "
               "layer1.0.conv1.weight, ...) or a `moco pretrain` checkpoint",
               flag, path, checkpoint ? " under " + prefix : std::string());
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
  // Checked here rather than by a strict load, so that the message names the file.
  const std::string report = model->load_state_dict(state, /*strict=*/false);
  ENGINE_CHECK(report.empty(),
               "{}{}: the tensors{} do not make a complete {} of width {}; the file is damaged or holds another "
               "model:{}",
               flag, path, checkpoint ? " under " + prefix : std::string(), rc.arch, rc.width, report);
  model->to(device);
  freeze(*model);
  return model;
}

std::shared_ptr<nn::ResNet> load_resnet_file(const std::string& path, Device device, const std::string& flag) {
  return frozen_resnet_from_file(read_resnet_file(path, flag), path, device, flag);
}

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

void check_tensor_shape(const SafetensorsFile& file, const std::string& name, const Shape& expected,
                        const std::string& path, const char* says) {
  ENGINE_CHECK(file.contains(name), "{}: has no tensor '{}', which {} needs; the file is damaged or holds another model",
               path, name, says);
  const Shape& found = file.at(name).shape();
  ENGINE_CHECK(found == expected, "{}: tensor '{}' is {} but {} needs {}; the file is damaged or holds another model",
               path, name, shape_str(found), says, shape_str(expected));
}

}  // namespace engine::ssl
