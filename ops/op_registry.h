// op_registry.h - the op list (op_list.def) as an enum and a name table.
#pragma once

#include <array>
#include <string_view>

namespace engine {

enum class OpId : int {
#define ENGINE_OP(name, family) name,
#include "ops/op_list.def"
#undef ENGINE_OP
};

inline constexpr std::array kOpNames = {
#define ENGINE_OP(name, family) std::string_view(#name),
#include "ops/op_list.def"
#undef ENGINE_OP
};

inline constexpr int kOpCount = static_cast<int>(kOpNames.size());

inline constexpr std::string_view op_name(OpId op) { return kOpNames[static_cast<int>(op)]; }

}  // namespace engine
