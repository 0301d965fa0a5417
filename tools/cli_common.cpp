// cli_common.cpp - small helpers the subcommands share.
#include "tools/cli_common.h"

#include "engine/precision.h"

namespace moco_cli {

engine::Device DeviceFlags::resolve() const {
  const engine::Device resolved = engine::resolve_device(device);
  engine::use_precision(engine::parse_precision(precision), resolved);
  return resolved;
}

void add_device_flags(CLI::App* cmd, DeviceFlags& flags) {
  cmd->add_option("--device", flags.device, "auto (a GPU when there is one), cpu, cuda or cuda:N")
      ->capture_default_str();
  cmd->add_option("--precision", flags.precision,
                  "fp32; tf32 (GPU tensor cores, f32 tensors with operands rounded to 10 mantissa bits); or bf16 "
                  "(mixed precision: bf16 activations through the ResNet, channels-last on a GPU, f32 parameters, "
                  "head and loss)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
}

}  // namespace moco_cli
