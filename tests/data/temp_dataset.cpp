// temp_dataset.cpp - see temp_dataset.h.
#include "temp_dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "data/codec.h"

namespace engine::data::testing {

namespace fs = std::filesystem;

Image patterned_image(int width, int height, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(0, 1);
  const double fx = 2 + 6 * u(gen), fy = 2 + 6 * u(gen), phase = 6.28 * u(gen);
  Image image(width, height, 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        const double wave = std::sin(fx * x / width * 6.28 + phase + c) * std::cos(fy * y / height * 6.28 - c);
        image.at(x, y, c) = static_cast<uint8_t>(std::clamp(128 + 100 * wave + 20 * (u(gen) - 0.5), 0.0, 255.0));
      }
  return image;
}

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_jpeg_folder(const fs::path& root, int classes, int per_class, int width, int height) {
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      const uint64_t seed = static_cast<uint64_t>(c) * 1000 + i;
      const Image image = patterned_image(width + (i % 3) * 7, height + (i % 2) * 5, seed);
      write_bytes(root / ("class" + std::to_string(c)) / ("img" + std::to_string(i) + ".jpg"), encode_jpeg(image, 90));
    }
}

}  // namespace engine::data::testing
