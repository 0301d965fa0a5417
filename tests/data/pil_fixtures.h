// pil_fixtures.h - the PIL/torchvision reference images of tools/make_data_fixtures.py, for the
// data tests: tests/fixtures/data/pil_reference.safetensors and the image files beside it.
#pragma once

#include <string>

#include "data/image.h"
#include "engine/serialize.h"

namespace engine::data::testing {

std::string data_fixture_path(const std::string& name);  // tests/fixtures/data/<name>
const SafetensorsFile& pil_reference();                   // loaded once
// A (H, W, C) u8 tensor of the reference file as an Image.
Image reference_image(const std::string& name);
// The largest per-sample difference between two images of the same size (-1 if sizes differ).
int max_abs_diff(const Image& a, const Image& b);

}  // namespace engine::data::testing
