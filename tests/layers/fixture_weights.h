// fixture_weights.h - the deterministic weights and inputs of the ResNet fixtures, recomputed bit
// for bit from tools/make_resnet_fixtures.py's rule, so the fixtures need not store them.
#pragma once

#include <string>

#include "engine/serialize.h"
#include "layers/module.h"

namespace engine::testing {

// Where the committed fixtures live (set by CMake).
std::string fixture_path(const std::string& file);

// The value rule of the fixture script for the state-dict entry (or input) `name` of `shape`.
Tensor fixture_tensor(const std::string& name, const Shape& shape, DType dtype = DType::f32);
// Every entry of `model`'s state dict from that rule.
NamedTensors fixture_state_dict(const nn::Module& model);

}  // namespace engine::testing
