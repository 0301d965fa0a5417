// synth_classes.h - the synthetic dataset's class templates: which parts an object has and their
// geometry in its own frame (internal to synth*.cpp).
//
// Parts are listed in drawing order; part k (1-based) gets label k. Every proportion is jittered per
// image, so the class is the arrangement, not one exact outline. Object frames are about two units
// across, y down; a pose maps them into the image.
#pragma once

#include <vector>

#include "data/sample_rng.h"
#include "data/synth_raster.h"

namespace engine::data::synth_detail {

struct ClassTemplate {
  const char* name;
  const char* description;
  std::vector<const char*> part_names;
  std::vector<Shape> (*build)(SampleRng& rng);
};

// Every class template, in class-index order.
const std::vector<ClassTemplate>& templates();

// templates()[class_index], after checking the index is in range.
const ClassTemplate& template_of(int class_index);

}  // namespace engine::data::synth_detail
