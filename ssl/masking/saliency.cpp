// saliency.cpp - see saliency.h.
#include "ssl/masking/saliency.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"
#include "ops/reduce_dim.h"

namespace engine::ssl {

Tensor saliency_maps(const Tensor& feature_map) {
  ENGINE_CHECK(feature_map.dim() == 4 && feature_map.size(2) == feature_map.size(3),
               "saliency_maps: expected a square feature map (N, C, G, G), found {}", feature_map.str());
  // A bf16 map (mixed precision) is summed in f32: 2048 channels of 8-bit values.
  return sum(feature_map.dtype() == DType::bf16 ? feature_map.to(DType::f32) : feature_map, 1);  // (N, G, G)
}

ForegroundCells foreground_cells(const float* map, int64_t grid, ForegroundRule rule) {
  ENGINE_CHECK(grid >= 1, "foreground_cells: the grid must be at least 1x1, found {}", grid);
  ForegroundCells out;
  out.foreground.assign(static_cast<size_t>(grid * grid), 0);
  const MapThreshold t = foreground_of_map(out.foreground.data(), map, grid, rule == ForegroundRule::RowSortedQuirk);
  out.count = t.count;
  out.ratio = static_cast<double>(t.count) / static_cast<double>(grid * grid);
  out.mean = t.mean;
  out.std = t.std;
  out.threshold = t.threshold;
  return out;
}

Tensor foreground_cells(const Tensor& maps, ForegroundRule rule) {
  ENGINE_CHECK(maps.dim() == 3 && maps.size(1) == maps.size(2),
               "foreground_cells: expected saliency maps (N, G, G), found {}", maps.str());
  return saliency_foreground(maps.detach().to(DType::f32), rule);
}

}  // namespace engine::ssl
