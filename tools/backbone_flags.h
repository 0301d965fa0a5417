// backbone_flags.h - the flags that name the network an evaluation measures (moco knn, moco
// lincls): --pretrained FILE|random, and for random the architecture flags of `moco pretrain`.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "ssl/eval/backbone.h"

namespace moco_cli {

struct BackboneFlags {
  std::string pretrained;
  std::string arch = "resnet50";
  bool small_stem = false;
  int64_t width = 64;
  uint64_t seed = 0;
  engine::ssl::BackboneSpec spec() const;
};

void add_backbone_flags(CLI::App* cmd, BackboneFlags& flags);

}  // namespace moco_cli
