// npy.h - NumPy's .npy format (version 1.0), for users who read results with numpy.load: a magic
// string, a little Python dict literal giving dtype, order and shape, padded so the data starts at
// a multiple of 64 bytes, then the values in C order, little-endian.
#pragma once

#include <string>

#include "engine/tensor.h"

namespace engine {

// The bytes of a .npy file holding `t` (f32, f64, i32 or i64; any shape; any device).
std::string npy_bytes(const Tensor& t);

// Writes npy_bytes(t) to `path` atomically (engine/file_io.h).
void save_npy(const std::string& path, const Tensor& t);

}  // namespace engine
