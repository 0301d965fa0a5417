// synth.cpp - the synthetic dataset of synth.h: composing one image (background, clutter, a posed
// object from synth_classes.h, drawn with synth_raster.h) and the threaded writer.
#include "data/synth.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <string_view>
#include <thread>

#include "data/codec.h"
#include "data/sample_rng.h"
#include "data/synth_classes.h"
#include "data/synth_raster.h"
#include "engine/check.h"
#include "engine/file_io.h"
#include "engine/log.h"
#include "engine/parallel_for.h"

namespace engine::data {

using namespace synth_detail;

namespace {

// ---------------------------------------------------------------------------------------------
// One image

// A smooth gradient between two random colours, coloured low-frequency noise, and half the time a
// faint full-image texture: no two backgrounds share a colour statistic the object could hide behind.
// `plain`: the gradient alone (the same draws are made, so the objects do not move).
void draw_background(Canvas& canvas, SampleRng& rng, bool plain) {
  const int size = canvas.size;
  const Rgb from = random_colour(rng), to = random_colour(rng);
  const double direction = rng.uniform(0, 2 * std::numbers::pi);
  const float gx = static_cast<float>(std::cos(direction)) / size, gy = static_cast<float>(std::sin(direction)) / size;
  const Rgb noise_amplitude = {jitter(rng, 0, 80), jitter(rng, 0, 80), jitter(rng, 0, 80)};
  const float noise_cell = jitter(rng, 0.08, 0.3) * size;
  const auto noise_salt = static_cast<uint32_t>(rng.next_word());
  const bool textured = rng.bernoulli(0.5);
  const Texture overlay = random_texture(rng, size);
  const float overlay_alpha = jitter(rng, 0.15, 0.4);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const float t = std::clamp(0.5f + gx * (x - size / 2.f) + gy * (y - size / 2.f), 0.f, 1.f);
      Rgb colour = mix(from, to, t);
      const float n = value_noise(static_cast<float>(x), static_cast<float>(y), noise_cell, noise_salt) - 0.5f;
      if (!plain) {
        for (size_t c = 0; c < 3; ++c) colour[c] += 2 * n * noise_amplitude[c];
      }
      if (textured && !plain) colour = mix(colour, overlay.at(x + 0.5f, y + 0.5f), overlay_alpha);
      float* p = &canvas.rgb[(static_cast<size_t>(y) * size + x) * 3];
      for (size_t c = 0; c < 3; ++c) p[c] = colour[c];
    }
  }
}

// Three to `most` (8 by default) shapes of the kinds the parts are made of, 8% to 40% of the image
// side: so that a disc or a ring alone does not tell a lollipop or a cart.
void draw_clutter(Canvas& canvas, SampleRng& rng, int most) {
  if (most == 0) return;
  const auto size = static_cast<float>(canvas.size);
  const int64_t count = rng.randint(std::min(3, most), most);
  for (int64_t i = 0; i < count; ++i) {
    const float extent = jitter(rng, 0.08, 0.4) * size / 2, aspect = jitter(rng, 0.25, 1.0);
    Shape shape;
    switch (rng.randint(0, 4)) {
      case 0: shape = rect(0, 0, 2 * extent, 2 * extent * aspect); break;
      case 1: shape = ellipse(0, 0, extent, extent * aspect); break;
      case 2: shape = triangle({-extent, extent * aspect}, {extent, extent * aspect}, {jitter(rng, -1, 1) * extent, -extent}); break;
      case 3: shape = ring(0, 0, extent, jitter(rng, 0.4, 0.7)); break;
      default: shape = dome(0, 0, extent, extent * aspect); break;
    }
    Pose pose;
    pose.angle = jitter(rng, 0, 2 * std::numbers::pi);
    pose.position = {jitter(rng, 0, 1) * size, jitter(rng, 0, 1) * size};
    canvas.draw(pose.apply(shape), random_texture(rng, canvas.size), 0);
  }
}

// Rotation within +-30 degrees, a mirror half the time, the object's longer side 35% to 80% of the
// image side, and a position that keeps at least 85% of its extent inside the image.
Pose random_pose(SampleRng& rng, const Box& object, int size) {
  Pose pose;
  pose.mirror = rng.bernoulli(0.5);
  pose.angle = jitter(rng, -std::numbers::pi / 6, std::numbers::pi / 6);
  const float extent = std::max(object.x1 - object.x0, object.y1 - object.y0);
  const float fraction = jitter(rng, 0.35, 0.8);
  pose.scale = fraction * size / extent;
  pose.origin = {(object.x0 + object.x1) / 2, (object.y0 + object.y1) / 2};
  const float slack = (1 - fraction) * size / 2 + 0.15f * fraction * size / 2;
  pose.position = {size / 2.f + jitter(rng, -slack, slack), size / 2.f + jitter(rng, -slack, slack)};
  return pose;
}

// The pose used when eight random ones each hid a part (out of the image, or under another part):
// centred, upright, 70% of the image.
Pose fallback_pose(const Box& object, int size) {
  Pose pose;
  pose.scale = 0.7f * size / std::max(object.x1 - object.x0, object.y1 - object.y0);
  pose.origin = {(object.x0 + object.x1) / 2, (object.y0 + object.y1) / 2};
  pose.position = {size / 2.f, size / 2.f};
  return pose;
}

bool every_part_visible(const Image& labels, int part_count) {
  std::array<int64_t, 256> counts{};
  for (uint8_t v : labels.pixels) ++counts[v];
  const int64_t needed = std::max<int64_t>(3, static_cast<int64_t>(labels.width) * labels.height / 1000);
  for (int k = 1; k <= part_count; ++k)
    if (counts[static_cast<size_t>(k)] < needed) return false;
  return true;
}

uint8_t to_byte(float v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

SynthSample render_synth_sample(const SynthOptions& options, int class_index, int split, int64_t index) {
  const ClassTemplate& object_template = template_of(class_index);
  ENGINE_CHECK(split == kSynthTrain || split == kSynthVal, "synth: split must be {} (train) or {} (val), found {}", kSynthTrain,
               kSynthVal, split);
  ENGINE_CHECK(options.size >= 16, "synth: image size must be at least 16 pixels, found {}", options.size);
  SampleRng rng(options.seed, (static_cast<uint64_t>(split) << 16) | static_cast<uint64_t>(class_index), static_cast<uint64_t>(index));

  Canvas background(options.size);
  draw_background(background, rng, options.plain_background);
  draw_clutter(background, rng, options.clutter);

  const std::vector<Shape> parts = object_template.build(rng);
  Box object = bounds(parts[0]);
  for (const Shape& part : parts) {
    const Box b = bounds(part);
    object = {std::min(object.x0, b.x0), std::min(object.y0, b.y0), std::max(object.x1, b.x1), std::max(object.y1, b.y1)};
  }
  std::vector<Texture> textures;
  for (size_t k = 0; k < parts.size(); ++k) textures.push_back(random_texture(rng, options.size));

  constexpr int kPoseAttempts = 8;
  Canvas canvas = background;
  for (int attempt = 0; attempt <= kPoseAttempts; ++attempt) {
    const Pose pose = attempt < kPoseAttempts ? random_pose(rng, object, options.size) : fallback_pose(object, options.size);
    canvas = background;
    for (size_t k = 0; k < parts.size(); ++k) canvas.draw(pose.apply(parts[k]), textures[k], static_cast<uint8_t>(k + 1));
    if (every_part_visible(canvas.labels, static_cast<int>(parts.size()))) break;
  }

  // Sensor noise, so flat regions are never exactly flat.
  const float noise = jitter(rng, 0, 8);
  const auto noise_salt = static_cast<uint32_t>(rng.next_word());
  SynthSample sample{Image(options.size, options.size, 3), std::move(canvas.labels)};
  for (size_t i = 0; i < canvas.rgb.size(); ++i) {
    const float n = hash01(static_cast<int32_t>(i), 0, noise_salt) - 0.5f;
    sample.image.pixels[i] = to_byte(canvas.rgb[i] + 2 * n * noise);
  }
  return sample;
}

Image synth_foreground_mask(const Image& parts) {
  Image fg(parts.width, parts.height, 1, 0);
  for (size_t i = 0; i < parts.pixels.size(); ++i) fg.pixels[i] = parts.pixels[i] > 0 ? 255 : 0;
  return fg;
}

// ---------------------------------------------------------------------------------------------
// Writing the dataset

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kReadmeFirstLine = "This folder was written by `moco synth` (moco-engine, data/synth.h).";
constexpr std::array<const char*, 2> kSplitNames = {"train", "val"};

void check_options(const SynthOptions& o) {
  const int available = static_cast<int>(templates().size());
  ENGINE_CHECK(o.classes >= 2 && o.classes <= available, "synth: --classes must be between 2 and {} (the class templates there are), found {}",
               available, o.classes);
  ENGINE_CHECK(o.train_per_class >= 1, "synth: --train-per-class must be at least 1, found {}", o.train_per_class);
  ENGINE_CHECK(o.val_per_class >= 0, "synth: --val-per-class must be 0 or more, found {}", o.val_per_class);
  ENGINE_CHECK(o.train_per_class <= 99999 && o.val_per_class <= 99999,
               "synth: at most 99999 images per class and split (file names have five digits), found {} train and {} val",
               o.train_per_class, o.val_per_class);
  ENGINE_CHECK(o.size >= 16 && o.size <= 4096, "synth: --size must be between 16 and 4096 pixels, found {}", o.size);
  ENGINE_CHECK(o.clutter >= 0 && o.clutter <= 64, "synth: --clutter must be between 0 and 64 shapes, found {}",
               o.clutter);
  ENGINE_CHECK(o.threads >= 0, "synth: --threads must be 0 (all cores) or more, found {}", o.threads);
}

bool is_earlier_synth_output(const fs::path& out) {
  std::ifstream readme(out / "README.txt");
  std::string first_line;
  return readme && std::getline(readme, first_line) && first_line == kReadmeFirstLine;
}

// Writes only into a new or empty folder, so a dataset is never mixed into other files (say, into
// the train/ folder of another dataset); with `force`, clears an earlier synth output first.
void prepare_output_folder(const fs::path& out, bool force) {
  if (fs::exists(out) && !fs::is_empty(out)) {
    ENGINE_CHECK(force, "synth: '{}' exists and is not empty; choose a new folder, or pass --force to replace an earlier "
                 "`moco synth` output there", out.string());
    ENGINE_CHECK(is_earlier_synth_output(out),
                 "synth: '{}' is not empty and has no README.txt written by `moco synth`, so --force will not touch it; "
                 "choose a new folder, or empty this one yourself", out.string());
    for (const char* sub : {"train", "val", "masks"}) fs::remove_all(out / sub);
  }
  fs::create_directories(out);
}

std::string readme_text(const SynthOptions& o) {
  std::string text = fmt::format("{}\n\n", kReadmeFirstLine);
  text += fmt::format(
      "Regenerate: moco synth OUT --classes {} --train-per-class {} --val-per-class {} --size {} --clutter {}{} --seed {}\n",
      o.classes, o.train_per_class, o.val_per_class, o.size, o.clutter, o.plain_background ? " --plain-background" : "",
      o.seed);
  text += "(the same arguments give the same pixels, whatever the thread count)\n\n";
  text += fmt::format(
      "{} classes, {} train and {} val images each, {} x {} RGB JPEG (quality 90), up to {} clutter shapes, {} "
      "backgrounds, seed {}.\n\n",
      o.classes, o.train_per_class, o.val_per_class, o.size, o.size, o.clutter,
      o.plain_background ? "plain gradient" : "textured", o.seed);
  text += "Layout:\n"
          "  train/<class>/<class>_<index:05>.jpg, val/<class>/<class>_<index:05>.jpg\n"
          "  masks/<split>/<class>/<class>_<index:05>_fg.png     8-bit gray: 255 object, 0 background\n"
          "  masks/<split>/<class>/<class>_<index:05>_parts.png  8-bit gray: 0 background, k = part k of the object\n"
          "  masks/parts.txt                                     the part types: <class> <k> <part name>\n"
          "The masks are outside train/ and val/ so that an image folder does not read them as images.\n"
          "Clutter in the background is never labelled; a part's label covers the pixels it hides of other parts.\n\n"
          "Classes (a class is the arrangement of its parts; colours and textures are random per image):\n";
  for (int c = 0; c < o.classes; ++c) {
    const ClassTemplate& t = templates()[static_cast<size_t>(c)];
    std::string parts;
    for (size_t k = 0; k < t.part_names.size(); ++k) parts += fmt::format("{}{} = {}", k ? ", " : "", k + 1, t.part_names[k]);
    text += fmt::format("  {}: {} (parts: {})\n", t.name, t.description, parts);
  }
  return text;
}

std::string_view as_bytes(const std::vector<uint8_t>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

struct Job {
  int split, class_index;
  int64_t index;
};

Job job_at(const SynthOptions& o, int64_t i) {
  const int64_t train_total = static_cast<int64_t>(o.classes) * o.train_per_class;
  if (i < train_total) return {kSynthTrain, static_cast<int>(i / o.train_per_class), i % o.train_per_class};
  i -= train_total;
  return {kSynthVal, static_cast<int>(i / o.val_per_class), i % o.val_per_class};
}

void write_sample(const fs::path& out, const SynthOptions& o, const Job& job, const std::string& name) {
  const char* split = kSplitNames[static_cast<size_t>(job.split)];
  const std::string stem = fmt::format("{}_{:05d}", name, job.index);
  const SynthSample sample = render_synth_sample(o, job.class_index, job.split, job.index);
  const fs::path masks = out / "masks" / split / name;
  write_file_atomic((out / split / name / (stem + ".jpg")).string(), as_bytes(encode_jpeg(sample.image, 90)));
  write_file_atomic((masks / (stem + "_fg.png")).string(), as_bytes(encode_png(synth_foreground_mask(sample.parts))));
  write_file_atomic((masks / (stem + "_parts.png")).string(), as_bytes(encode_png(sample.parts)));
}

}  // namespace

void write_synth_dataset(const std::string& out_path, const SynthOptions& options) {
  check_options(options);
  const auto start = std::chrono::steady_clock::now();
  const fs::path out(out_path);
  prepare_output_folder(out, options.force);
  const std::vector<std::string> names = synth_class_names();
  for (int split : {kSynthTrain, kSynthVal}) {
    if (split == kSynthVal && options.val_per_class == 0) continue;
    for (int c = 0; c < options.classes; ++c) {
      fs::create_directories(out / kSplitNames[static_cast<size_t>(split)] / names[static_cast<size_t>(c)]);
      fs::create_directories(out / "masks" / kSplitNames[static_cast<size_t>(split)] / names[static_cast<size_t>(c)]);
    }
  }
  // The README first, so that an interrupted run is still recognised (and replaced) by --force.
  write_file_atomic((out / "README.txt").string(), readme_text(options));
  write_file_atomic(part_table_path(out.string()), synth_part_table(options.classes).text());

  const int64_t total = static_cast<int64_t>(options.classes) * (options.train_per_class + options.val_per_class);
  const int threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  parallel_for(total, threads, [&](int64_t i) {
    const Job job = job_at(options, i);
    write_sample(out, options, job, names[static_cast<size_t>(job.class_index)]);
  });

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log_info("synth: wrote {} images ({} classes x {} train + {} val, {} px) with their masks to {} in {:.1f} s ({} threads)",
             total, options.classes, options.train_per_class, options.val_per_class, options.size, out_path, seconds, threads);
}

}  // namespace engine::data
