// temp_dataset.h - small image folders written into a temporary directory for the data tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image.h"
#include "tests/common/temp_dir.h"

namespace engine::data::testing {

using engine::testing::TempDir;

// A textured image whose content depends on `seed` (smooth gradients plus noise, like a photo).
Image patterned_image(int width, int height, uint64_t seed);
void write_bytes(const std::filesystem::path& path, const std::vector<uint8_t>& bytes);
// root/<class c>/img<i>.jpg for `per_class` images per class, sizes varying around width x height.
void write_jpeg_folder(const std::filesystem::path& root, int classes, int per_class, int width, int height);

}  // namespace engine::data::testing
