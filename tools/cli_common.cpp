// cli_common.cpp - small helpers the subcommands share.
#include "tools/cli_common.h"

namespace moco_cli {

engine::Device resolve_device(const std::string& text) {
  if (text == "auto") return engine::cuda_device_count() > 0 ? engine::Device::cuda() : engine::Device::cpu();
  return engine::Device::parse(text);
}

}  // namespace moco_cli
