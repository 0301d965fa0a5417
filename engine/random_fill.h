// random_fill.h - the per-block body shared by the CPU loop and the CUDA kernel of random.h's
// fills, so both compute each element with the same code.
#pragma once

#include "engine/philox.h"
#include "engine/rounding.h"
#include "engine/random.h"

namespace engine {

// Writes elements [4 * block_index, 4 * block_index + 4) ∩ [0, n) of one draw.
template <typename T>
ENGINE_HD inline void random_fill_block(T* out, int64_t n, int64_t block_index, const RandomParams& p) {
  uint32_t w[4];
  philox::block_words(p.seed, p.stream, p.first_block + static_cast<uint64_t>(block_index), w);
  const int64_t first = 4 * block_index;
  double values[4];
  if (p.kind == RandomKind::Normal) {
    philox::normal_pair(w[0], w[1], values[0], values[1]);
    philox::normal_pair(w[2], w[3], values[2], values[3]);
    for (int j = 0; j < 4; ++j) values[j] = add_rn(p.a, mul_rn(p.b, values[j]));
  } else {
    for (int j = 0; j < 4; ++j) {
      if (p.kind == RandomKind::Uniform) {
        const double u = sizeof(T) == 8 ? philox::uniform32(w[j]) : philox::uniform24(w[j]);
        values[j] = add_rn(p.a, mul_rn(u, add_rn(p.b, -p.a)));
      } else {
        values[j] = philox::uniform24(w[j]) < p.a ? 1.0 : 0.0;
      }
    }
  }
  for (int j = 0; j < 4 && first + j < n; ++j) out[first + j] = convert_element<T>(values[j]);
}

// The 64-bit sort key of index i for randperm.
ENGINE_HD inline uint64_t randperm_key(int64_t i, uint64_t seed, uint64_t stream, uint64_t first_block) {
  uint32_t w[4];
  philox::block_words(seed, stream, first_block + static_cast<uint64_t>(i / 2), w);
  const int j = static_cast<int>(i % 2) * 2;
  return (static_cast<uint64_t>(w[j]) << 32) | w[j + 1];
}

// randperm's stream moved by an offset in memory (random.h); a null offset leaves it as it is.
// Unsigned addition wraps modulo 2^64, as Generator(seed, stream + offset) does on the host.
ENGINE_HD inline uint64_t randperm_stream(uint64_t stream, const int64_t* stream_offset) {
  return stream_offset ? stream + static_cast<uint64_t>(*stream_offset) : stream;
}

}  // namespace engine
