// fixture_weights.cpp - the twin of fixture_value() in tools/make_resnet_fixtures.py. Every value
// is computed in double in the same order as numpy does it, then rounded once to the tensor's dtype.
#include "tests/layers/fixture_weights.h"

#include <gtest/gtest.h>

#include <cmath>

namespace engine::testing {

namespace {

uint64_t fnv1a64(const std::string& text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char byte : text) h = (h ^ byte) * 0x100000001B3ull;
  return h;
}

double fixture_uniform(uint64_t base, int64_t i) {
  uint64_t z = base + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_batchnorm(const std::string& name) {
  const std::string module_path = name.substr(0, name.rfind('.'));
  const std::string module = module_path.substr(module_path.rfind('.') + 1);
  return module.rfind("bn", 0) == 0 || ends_with(module_path, "downsample.1");
}

}  // namespace

std::string fixture_path(const std::string& file) { return std::string(ENGINE_TEST_FIXTURES) + "/" + file; }

Tensor fixture_tensor(const std::string& name, const Shape& shape, DType dtype) {
  const int64_t n = shape_numel(shape);
  const std::string leaf = name.substr(name.rfind('.') + 1);
  const uint64_t base = fnv1a64(name);
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) {
    const double u = fixture_uniform(base, i);
    if (leaf == "num_batches_tracked")
      v[i] = 0.0;
    else if (leaf == "running_mean")
      v[i] = 0.2 * u - 0.1;
    else if (leaf == "running_var")
      v[i] = 0.5 + u;
    else if (is_batchnorm(name))
      v[i] = leaf == "weight" ? 0.5 + u : 0.2 * u - 0.1;
    else if (shape.size() == 4)
      v[i] = (2.0 * u - 1.0) * std::sqrt(6.0 / static_cast<double>(shape[1] * shape[2] * shape[3]));
    else if (name == "fc.weight")
      v[i] = (2.0 * u - 1.0) / std::sqrt(static_cast<double>(shape[1]));
    else if (name == "fc.bias")
      v[i] = (2.0 * u - 1.0) * 0.1;
    else if (name.rfind("input", 0) == 0 || name == "loss_weight")
      v[i] = 2.0 * u - 1.0;
    else
      ADD_FAILURE() << "no fixture rule for " << name;
  }
  return Tensor::from_vector(v, shape).to(dtype);
}

NamedTensors fixture_state_dict(const nn::Module& model) {
  NamedTensors out;
  for (const auto& [name, t] : model.state_dict()) out.emplace_back(name, fixture_tensor(name, t.shape(), t.dtype()));
  return out;
}

}  // namespace engine::testing
