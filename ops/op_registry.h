// op_registry.h - the names of the ops in op_list.def, which the conformance test reads to fail
// when an op has no case (tests/ops/test_op_conformance.cpp).
#pragma once

#include <array>
#include <string_view>

namespace engine {

inline constexpr std::array kOpNames = {
#define ENGINE_OP(name) std::string_view(#name),
#include "ops/op_list.def"
#undef ENGINE_OP
};

}  // namespace engine
