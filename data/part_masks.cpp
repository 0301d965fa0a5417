// part_masks.cpp - see part_masks.h.
#include "data/part_masks.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "data/codec.h"
#include "data/transforms.h"
#include "engine/check.h"

namespace engine::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTableFormat =
    "one line per part type, \"<class> <id> <name>\" (the class folder's name, the part's gray value 1-254 in "
    "the masks, and the rest of the line as its name; with tabs between the three when the class holds spaces), "
    "'#' for comments";

// The three fields of a line: split at tabs when it has one, else at the first two runs of spaces.
bool split_fields(const std::string& line, std::string& cls, std::string& id, std::string& name) {
  auto trim = [](std::string t) {
    const size_t a = t.find_first_not_of(" \t\r"), b = t.find_last_not_of(" \t\r");
    return a == std::string::npos ? std::string() : t.substr(a, b - a + 1);
  };
  if (const size_t tab = line.find('\t'); tab != std::string::npos) {
    const size_t tab2 = line.find('\t', tab + 1);
    if (tab2 == std::string::npos) return false;
    cls = trim(line.substr(0, tab)), id = trim(line.substr(tab + 1, tab2 - tab - 1)), name = trim(line.substr(tab2 + 1));
  } else {
    std::istringstream fields(line);
    fields >> cls >> id >> std::ws;
    std::getline(fields, name);
    name = trim(name);
  }
  return !cls.empty() && !id.empty() && !name.empty();
}

// Bytes 24 and 25 of a PNG (inside IHDR, the first chunk): the bit depth and the colour type.
void check_gray_png(const std::vector<uint8_t>& bytes, const std::string& mask_path) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  ENGINE_CHECK(bytes.size() > 26 && std::equal(kSignature, kSignature + 8, bytes.begin()) &&
                   std::string(bytes.begin() + 12, bytes.begin() + 16) == "IHDR",
               "the part mask {} is not a PNG; a part mask is an 8-bit gray PNG (a lossy JPEG would blur the ids)",
               mask_path);
  const int depth = bytes[24], colour = bytes[25];
  const char* kind = colour == 3 ? "a palette PNG, whose pixels would be read as colours, not indices"
                     : colour == 2 || colour == 6 ? "an RGB PNG"
                     : depth != 8 ? "not 8-bit"
                                  : nullptr;
  ENGINE_CHECK(kind == nullptr && (colour == 0 || colour == 4),
               "the part mask {} is {} (bit depth {}, colour type {}); a part mask is an 8-bit gray PNG of part ids: "
               "save the id array as mode \"L\" (PIL: Image.fromarray(ids.astype('uint8'), 'L'))",
               mask_path, kind ? kind : "not gray", depth, colour);
}

}  // namespace

PartTable::PartTable(std::vector<PartType> types) : types_(std::move(types)) {}

PartTable PartTable::parse(const std::string& text, const std::string& name) {
  std::vector<PartType> types;
  std::set<std::pair<std::string, int>> seen;
  std::istringstream lines(text.starts_with("\xEF\xBB\xBF") ? text.substr(3) : text);  // a UTF-8 byte-order mark
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank or comment
    PartType type;
    std::string id;
    ENGINE_CHECK(split_fields(line, type.class_name, id, type.name),
                 "{} line {}: expected \"<class> <id> <name>\", found \"{}\"; the table holds {}", name, number,
                 line.substr(0, 80), kTableFormat);
    ENGINE_CHECK(id.find_first_not_of("0123456789") == std::string::npos && id.size() <= 3 && std::stoi(id) >= 1 &&
                     std::stoi(id) <= 254,
                 "{} line {}: the id '{}' is not a part id; ids are 1 to 254 (0 is background, 255 unlabelled); a "
                 "class folder name with spaces needs tabs between the fields",
                 name, number, id.substr(0, 20));
    type.id = std::stoi(id);
    ENGINE_CHECK(seen.insert({type.class_name, type.id}).second, "{} line {}: class {} has part id {} twice", name,
                 number, type.class_name, type.id);
    types.push_back(std::move(type));
  }
  ENGINE_CHECK(!types.empty(), "{}: no part type in it; the table holds {}", name, kTableFormat);
  return PartTable(std::move(types));
}

PartTable PartTable::read(const std::string& path) {
  ENGINE_CHECK(fs::is_regular_file(path),
               "no part table {}: part-level probing needs it beside the masks, {}. `moco synth` writes it for the "
               "synthetic dataset (rerun it with --force for a dataset written before the table existed)",
               path, kTableFormat);
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return parse(std::string(bytes.begin(), bytes.end()), path);
}

std::string PartTable::text() const {
  std::string out = "# Part types for part-level probing: <class> <id> <name>, id = the part's gray value in\n"
                    "# masks/<split>/<class>/<image>_parts.png (0 background, 255 unlabelled).\n";
  for (const PartType& t : types_) out += fmt::format("{} {} {}\n", t.class_name, t.id, t.name);
  return out;
}

int64_t PartTable::label(const std::string& class_name, int id) const {
  for (size_t k = 0; k < types_.size(); ++k)
    if (types_[k].id == id && types_[k].class_name == class_name) return static_cast<int64_t>(k);
  return -1;
}

std::string PartTable::type_name(int64_t label) const {
  ENGINE_CHECK(label >= 0 && label < size(), "PartTable: label {} outside the table's {} types", label, size());
  const PartType& t = types_[static_cast<size_t>(label)];
  return t.class_name + "/" + t.name;
}

std::string part_table_path(const std::string& root) { return (fs::path(root) / "masks" / "parts.txt").string(); }

std::string part_mask_path(const std::string& root, const std::string& split, const std::string& image_path) {
  const fs::path relative = fs::path(image_path).lexically_relative(fs::path(root) / split);
  ENGINE_CHECK(!relative.empty() && *relative.begin() != "..",
               "part_mask_path: the image {} is not below {}", image_path, (fs::path(root) / split).string());
  fs::path mask = fs::path(root) / "masks" / split / relative;
  mask.replace_filename(relative.stem().string() + "_parts.png");
  return mask.string();
}

Image read_part_mask(const std::string& mask_path, int width, int height, const std::string& image_path) {
  ENGINE_CHECK(fs::exists(mask_path),
               "no part mask for {}: expected {}, an 8-bit gray PNG of the image's {}x{} pixels whose values are part "
               "ids (data/part_masks.h)",
               image_path, mask_path, width, height);
  const std::vector<uint8_t> bytes = read_file_bytes(mask_path);
  check_gray_png(bytes, mask_path);
  Image decoded;
  try {
    decoded = decode_image(bytes, mask_path);
  } catch (const std::exception& e) {
    ENGINE_THROW("the part mask of {} cannot be read: {}", image_path, e.what());
  }
  ENGINE_CHECK(decoded.width == width && decoded.height == height,
               "the part mask {} is {}x{}, but its image {} is {}x{}: a mask must label every pixel of its image",
               mask_path, decoded.width, decoded.height, image_path, width, height);
  Image mask(width, height, 1);
  const size_t pixels = static_cast<size_t>(width) * static_cast<size_t>(height);
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* p = decoded.pixels.data() + i * static_cast<size_t>(decoded.channels);
    ENGINE_CHECK(decoded.channels == 1 || (p[0] == p[1] && p[1] == p[2]),
                 "the part mask {} is not gray: pixel ({}, {}) is RGB ({}, {}, {}); part ids are gray values (a "
                 "palette PNG must be saved as its index array, mode \"L\")",
                 mask_path, i % static_cast<size_t>(width), i / static_cast<size_t>(width), p[0], p[1], p[2]);
    mask.pixels[i] = p[0];
  }
  return mask;
}

Image part_mask_view(const Image& mask, const AugmentConfig& eval) {
  ENGINE_CHECK(!eval.random_crop && mask.channels == 1,
               "part_mask_view: expected a 1-channel mask and the evaluation transform (Resize + CenterCrop)");
  const auto [rw, rh] = shorter_side_size(mask.width, mask.height, eval.resize_size);
  const CropBox box = center_crop_box(rw, rh, eval.size);
  Image view(eval.size, eval.size, 1);
  // The nearest source pixel of resized pixel (rx, ry): the one whose span holds its centre.
  auto source = [](int resized, int resized_size, int size) {
    return std::min(size - 1, static_cast<int>((resized + 0.5) * size / resized_size));
  };
  for (int y = 0; y < eval.size; ++y) {
    const int sy = source(box.top + y, rh, mask.height);
    for (int x = 0; x < eval.size; ++x)
      view.pixels[static_cast<size_t>(y) * eval.size + x] = mask.at(source(box.left + x, rw, mask.width), sy, 0);
  }
  return view;
}

float PartCellShares::cells(size_t part) const {
  const size_t g2 = static_cast<size_t>(grid) * static_cast<size_t>(grid);
  float total = 0.f;
  for (size_t i = 0; i < g2; ++i) total += shares[part * g2 + i];
  return total;
}

PartCellShares part_cell_shares(const Image& view, int stride) {
  ENGINE_CHECK(view.channels == 1 && view.width == view.height && view.width >= 1 && stride >= 1,
               "part_cell_shares: expected a square 1-channel view and a stride >= 1, found {}x{}x{} and {}",
               view.width, view.height, view.channels, stride);
  const int S = view.width;
  PartCellShares out;
  out.stride = stride;
  out.grid = (S + stride - 1) / stride;
  const size_t g = static_cast<size_t>(out.grid), g2 = g * g;
  // The ids present first, so the counts hold only theirs: (parts, g, g), not 256 g^2.
  std::vector<int> part_of(256, -1);
  for (uint8_t id : view.pixels)
    if (id != 0 && id != kPartUnlabelled) part_of[id] = 0;
  for (int id = 1; id < kPartUnlabelled; ++id)
    if (part_of[static_cast<size_t>(id)] == 0) {
      part_of[static_cast<size_t>(id)] = static_cast<int>(out.ids.size());
      out.ids.push_back(id);
    }
  std::vector<int> counts(out.ids.size() * g2, 0), cell_pixels(g2, 0);
  for (int y = 0; y < S; ++y) {
    for (int x = 0; x < S; ++x) {
      const size_t cell = static_cast<size_t>(out.cell_of(y)) * g + static_cast<size_t>(out.cell_of(x));
      ++cell_pixels[cell];
      const int part = part_of[view.pixels[static_cast<size_t>(y) * S + x]];
      if (part >= 0) ++counts[static_cast<size_t>(part) * g2 + cell];
    }
  }
  out.shares.resize(counts.size());
  for (size_t i = 0; i < counts.size(); ++i)
    out.shares[i] = static_cast<float>(counts[i]) / static_cast<float>(cell_pixels[i % g2]);
  return out;
}

}  // namespace engine::data
