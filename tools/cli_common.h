// cli_common.h - small helpers the subcommands share.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "engine/device.h"

namespace moco_cli {

// --device (auto, cpu, cuda or cuda:N) and --precision (fp32, tf32 or bf16, engine/precision.h): every
// command that trains or evaluates takes both.
struct DeviceFlags {
  std::string device = "auto";
  std::string precision = "fp32";
  // The device asked for ("auto": a GPU when there is one, else the CPU), with the precision made
  // the math of its GEMMs and convolutions; throws for tf32 on the CPU.
  engine::Device resolve() const;
};
void add_device_flags(CLI::App* cmd, DeviceFlags& flags);

}  // namespace moco_cli
