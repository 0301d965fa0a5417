// channel_layout.h - where element (n, c, i) of an (N, C, H*W) activation lives, in NCHW or NHWC.
// Shared by the per-channel ops (batchnorm2d, the conv bias, pooling) on both backends.
//     NCHW: offset = (n C + c) HW + i        NHWC: offset = (n HW + i) C + c
#pragma once

#include <cstdint>

#include "engine/dtype.h"
#include "engine/tensor.h"

namespace engine {

struct ChannelLayout {
  int64_t N, C, HW;
  bool channels_last;
  ENGINE_HD int64_t offset(int64_t n, int64_t c, int64_t i) const {
    return channels_last ? (n * HW + i) * C + c : (n * C + c) * HW + i;
  }
  // The channel of the element at `offset`.
  ENGINE_HD int64_t channel(int64_t offset) const { return channels_last ? offset % C : offset / HW % C; }
  ENGINE_HD int64_t numel() const { return N * C * HW; }
};

// The layout of a 4-D activation as stored: NHWC when its strides say so, else NCHW (the caller
// has made it contiguous in one of the two).
inline ChannelLayout channel_layout_of(const Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3), x.memory_format() == MemoryFormat::NHWC};
}

}  // namespace engine
