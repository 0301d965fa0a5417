// pil_fixtures.cpp - see pil_fixtures.h.
#include "pil_fixtures.h"

#include <cstdlib>
#include <cstring>

namespace engine::data::testing {

std::string data_fixture_path(const std::string& name) { return std::string(ENGINE_TEST_FIXTURES) + "/data/" + name; }

const SafetensorsFile& pil_reference() {
  static const SafetensorsFile file = load_safetensors(data_fixture_path("pil_reference.safetensors"));
  return file;
}

Image reference_image(const std::string& name) {
  const Tensor& t = pil_reference().at(name);
  ENGINE_CHECK(t.dim() == 3 && t.dtype() == DType::u8, "fixture '{}' is {}, expected (H, W, C) u8", name, t.str());
  Image image(static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), static_cast<int>(t.size(2)));
  std::memcpy(image.pixels.data(), t.data_ptr(), image.pixels.size());
  return image;
}

int max_abs_diff(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) return -1;
  int worst = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(a.pixels[i] - b.pixels[i]));
  return worst;
}

}  // namespace engine::data::testing
