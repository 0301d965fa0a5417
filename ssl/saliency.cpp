// saliency.cpp - see saliency.h.
#include "ssl/saliency.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"
#include "ops/reduce_dim.h"

namespace engine::ssl {

Tensor saliency_maps(const Tensor& feature_map) {
  ENGINE_CHECK(feature_map.dim() == 4 && feature_map.size(2) == feature_map.size(3),
               "saliency_maps: expected a square feature map (N, C, G, G), found {}", feature_map.str());
  return sum(feature_map, 1);  // (N, G, G)
}

ForegroundCells foreground_cells(const float* map, int64_t grid, ForegroundRule rule) {
  ENGINE_CHECK(grid >= 1, "foreground_cells: the grid must be at least 1x1, found {}", grid);
  const int64_t cells = grid * grid;
  ForegroundCells out;
  double sum = 0;
  for (int64_t i = 0; i < cells; ++i) sum += map[i];
  out.mean = sum / static_cast<double>(cells);
  double squares = 0;
  for (int64_t i = 0; i < cells; ++i) squares += (map[i] - out.mean) * (map[i] - out.mean);
  out.std = std::sqrt(squares / static_cast<double>(cells));
  out.threshold = out.mean - 0.6 * out.std;
  out.foreground.assign(static_cast<size_t>(cells), 0);
  for (int64_t r = 0; r < grid; ++r) {
    int64_t in_row = 0;
    for (int64_t c = 0; c < grid; ++c) {
      const bool fg = map[r * grid + c] >= out.threshold;
      in_row += fg;
      if (rule == ForegroundRule::Threshold) out.foreground[static_cast<size_t>(r * grid + c)] = fg;
    }
    if (rule == ForegroundRule::RowSortedQuirk)
      for (int64_t c = grid - in_row; c < grid; ++c) out.foreground[static_cast<size_t>(r * grid + c)] = 1;
    out.count += in_row;
  }
  out.ratio = static_cast<double>(out.count) / static_cast<double>(cells);
  return out;
}

ForegroundBatch foreground_cells(const Tensor& maps, ForegroundRule rule) {
  ENGINE_CHECK(maps.dim() == 3 && maps.size(1) == maps.size(2),
               "foreground_cells: expected saliency maps (N, G, G), found {}", maps.str());
  const int64_t N = maps.size(0), G = maps.size(1);
  const std::vector<float> values = maps.detach().to(DType::f32).to_vector<float>();
  ForegroundBatch out{Tensor::empty({N, G, G}, DType::u8), Tensor::empty({N}, DType::f32)};
  uint8_t* fg = out.foreground.data<uint8_t>();
  float* ratio = out.ratio.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    const ForegroundCells cells = foreground_cells(values.data() + n * G * G, G, rule);
    std::copy(cells.foreground.begin(), cells.foreground.end(), fg + n * G * G);
    ratio[n] = static_cast<float>(cells.ratio);
  }
  return out;
}

}  // namespace engine::ssl
