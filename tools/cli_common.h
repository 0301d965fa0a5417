// cli_common.h - small helpers the subcommands share.
#pragma once

#include <string>

#include "engine/device.h"

namespace moco_cli {

// "auto" (a GPU when there is one, else the CPU), "cpu", "cuda" or "cuda:N".
engine::Device resolve_device(const std::string& text);

}  // namespace moco_cli
