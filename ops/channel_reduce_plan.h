// channel_reduce_plan.h - how channel_reduce.cuh splits the per-(group, channel) sums of an
// activation over a GPU's blocks. Plain host code, so the tests can check which shapes split.
//
// The sums are over a (rows x splits) grid of blocks, then a combine pass adds each row's
// `splits` partial sums in a fixed order:
//   NCHW: a row is one (group, channel): its N/groups runs of HW contiguous values; one block per
//         row and split, its threads walking the row's values in order.
//   NHWC: channels are contiguous, so a block takes a tile of kTileChannels channels of one group
//         (threads across the tile's channels: a warp reads 32 neighbouring values) and a range of
//         the group's pixels. An NCHW activation with HW = 1 is stored exactly as NHWC and takes
//         this path too (its rows would be single values C apart).
// Splits: enough blocks for kBlocksPerMultiprocessor per multiprocessor (a full H100 wave of
// 256-thread blocks is 132 x 8), but no block with fewer than kMinElementsPerBlock values (8 per
// thread), below which a block's fixed cost (its reduction and one more partial to combine) is
// no longer small against its loads. Layer1 of ResNet-50 at batch 256 in 4 groups: 256 rows of
// 200704 values, 5 splits; the last stage (C 2048, 7x7): 8192 NCHW rows, no split needed.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/channel_layout.h"

namespace engine {

struct ChannelReducePlan {
  static constexpr int64_t kTileChannels = 32;
  static constexpr int64_t kBlocksPerMultiprocessor = 8;
  static constexpr int64_t kMinElementsPerBlock = 2048;
  static constexpr int64_t kMaxSplits = 65535;  // gridDim.y

  bool tiled = false;       // the NHWC kernel (channel tiles) rather than the NCHW one (rows)
  int64_t row_blocks = 0;   // gridDim.x: rows (NCHW) or groups x channel tiles (NHWC)
  int64_t splits = 1;       // gridDim.y: blocks sharing one row or tile
  int64_t rows = 0;         // groups x C: the partial sums each split writes
};

// `groups` consecutive groups of N / groups images, each summed apart; `multiprocessors` of the GPU.
inline ChannelReducePlan plan_channel_reduce(const ChannelLayout& l, int64_t groups, int64_t multiprocessors) {
  ChannelReducePlan p;
  p.tiled = l.channels_last || l.HW == 1;
  p.rows = groups * l.C;
  const int64_t per_group = l.N / groups * l.HW;  // values of one (group, channel)
  const int64_t tiles = (l.C + ChannelReducePlan::kTileChannels - 1) / ChannelReducePlan::kTileChannels;
  p.row_blocks = p.tiled ? groups * tiles : p.rows;
  // A tile's block visits kTileChannels values per pixel, idle lanes included.
  const int64_t per_block_row = p.tiled ? per_group * ChannelReducePlan::kTileChannels : per_group;
  const int64_t wanted = multiprocessors * ChannelReducePlan::kBlocksPerMultiprocessor;
  const int64_t for_occupancy = (wanted + p.row_blocks - 1) / std::max<int64_t>(p.row_blocks, 1);
  const int64_t most = per_block_row / ChannelReducePlan::kMinElementsPerBlock;
  p.splits = std::clamp<int64_t>(std::min(for_occupancy, most), 1, ChannelReducePlan::kMaxSplits);
  return p;
}

}  // namespace engine
