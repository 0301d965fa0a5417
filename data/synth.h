// synth.h - the built-in synthetic dataset (`moco synth`): objects made of two to four parts on
// textured, cluttered backgrounds, with a foreground mask and a part-label mask for every image.
//
// A class is the geometry of an arrangement of primitive shapes (a house is a box under a
// triangle with a door; a lollipop is a disc on a stem), never its colour: every part gets a random
// colour and texture per image, the object a random rotation, scale, mirror and position, and the
// background is a random gradient with noise and clutter made of the same primitives as the parts.
// So a classifier cannot read the class off colour statistics or off a single part; it has to see
// how the parts are arranged, which is what self-supervised training should learn.
//
// Every image is a pure function of (seed, split, class, index): its random numbers come from
// SampleRng(seed, split << 16 | class, index), so the dataset is the same whatever the thread count.
//
// On disk (write_synth_dataset):
//   OUT/train/<class>/<class>_<index:05>.jpg          RGB, JPEG quality 90
//   OUT/val/<class>/<class>_<index:05>.jpg
//   OUT/masks/<split>/<class>/<class>_<index:05>_fg.png     8-bit gray: 255 object, 0 background
//   OUT/masks/<split>/<class>/<class>_<index:05>_parts.png  8-bit gray: 0 background, k = part k (1..4)
//   OUT/masks/parts.txt                                the part types: "<class> <k> <part name>" (data/part_masks.h)
//   OUT/README.txt                                     classes, counts, size, seed, mask values
// The masks live outside train/ and val/ because an image folder would take the PNGs for images.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/part_masks.h"

namespace engine::data {

struct SynthOptions {
  int classes = 10;  // the first `classes` of synth_class_names(), 2 or more
  int train_per_class = 500;
  int val_per_class = 100;
  int size = 96;  // image side in pixels
  // Distractor shapes in the background: min(3, clutter) to clutter of them. 0 draws none, an
  // easier dataset (the quickstart's: a few minutes of CPU pretraining can learn its shapes).
  int clutter = 8;
  // Backgrounds of the colour gradient alone, without noise and texture: with clutter 0, the
  // quickstart's easy variant.
  bool plain_background = false;
  uint64_t seed = 0;
  int threads = 0;     // 0: std::thread::hardware_concurrency()
  bool force = false;  // replace an earlier `moco synth` output in the same folder
};

inline constexpr int kSynthTrain = 0;  // the `split` argument of render_synth_sample
inline constexpr int kSynthVal = 1;

// The names of every class template, in class-index order ("house", "lollipop", ...).
std::vector<std::string> synth_class_names();

struct SynthSample {
  Image image;  // size x size, RGB
  Image parts;  // size x size, 1 channel: 0 background, k = part k of the object (1..parts of the class)
};

// The number of parts of a class (2 to 4): the labels its part mask uses.
int synth_class_part_count(int class_index);
// The part types of the first `classes` classes, as masks/parts.txt lists them.
PartTable synth_part_table(int classes);

// One image and its part labels; deterministic in (options.seed, options.size, class_index, split, index).
SynthSample render_synth_sample(const SynthOptions& options, int class_index, int split, int64_t index);

// 255 where parts > 0, else 0: the foreground mask written next to the part mask.
Image synth_foreground_mask(const Image& parts);

// Writes the whole dataset under `out` (layout above) with `options.threads` workers and prints a
// one-line summary with the time taken. `out` must be new or empty, unless options.force is set and
// it is an earlier `moco synth` output (its README.txt says so), whose train/, val/ and masks/ are
// then deleted first, so no stale image survives.
void write_synth_dataset(const std::string& out, const SynthOptions& options);

}  // namespace engine::data
