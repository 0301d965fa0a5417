// plain_synth.h - the small synthetic dataset the pretraining tests train on: 4 classes of
// `per_class` training images (and 1 validation image each) at 40 pixels on plain backgrounds
// (the quickstart's easy variant), written to root/synth.
#pragma once

#include <filesystem>

#include "data/synth.h"

namespace engine::testing {

inline void write_plain_synth(const std::filesystem::path& root, int per_class) {
  data::SynthOptions o;
  o.classes = 4;
  o.train_per_class = per_class;
  o.val_per_class = 1;
  o.size = 40;
  o.clutter = 0;
  o.plain_background = true;
  o.threads = 1;
  data::write_synth_dataset((root / "synth").string(), o);
}

}  // namespace engine::testing
