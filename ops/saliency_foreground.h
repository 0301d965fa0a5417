// saliency_foreground.h - the foreground cells of saliency maps (the masking's METHOD.md 4.3), on the
// maps' device, so the masked step never reads a map back to the host.
//
// Contract. maps (N, G, G) f32: image n's map holds G^2 values M (the final feature map summed
// over channels, ssl/masking/saliency.h). With mu their mean and sigma their population standard deviation,
// computed in double, a cell is foreground when M(r, c) >= tau = mu - 0.6 sigma:
//   Threshold:       FG(r, c) = [M(r, c) >= tau]
//   RowSortedQuirk:  the published code tests a row-sorted copy of each row, so each row keeps its
//                    count n_r = #{c : M(r, c) >= tau} but the cells are its rightmost ones:
//                    FG(r, c) = [c >= G - n_r]  (--reference-quirks)
// Output (N, G, G) u8, 1 = foreground. No gradient: the cells select what masking replaces.
// The CPU and CUDA code share foreground_of_map below, so both give the same cells bit for bit
// (the same double operations in the same order).
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/dtype.h"
#include "engine/tensor.h"

namespace engine {

enum class ForegroundRule { Threshold, RowSortedQuirk };

struct MapThreshold {
  double mean = 0, std = 0, threshold = 0;
  int64_t count = 0;  // |FG|
};

// One map of grid * grid row-major values into fg (grid * grid cells), host and device alike.
ENGINE_HD inline MapThreshold foreground_of_map(uint8_t* fg, const float* map, int64_t grid, bool row_sorted_quirk) {
  const int64_t cells = grid * grid;
  MapThreshold t;
  double sum = 0;
  for (int64_t i = 0; i < cells; ++i) sum += map[i];
  t.mean = sum / static_cast<double>(cells);
  double squares = 0;
  for (int64_t i = 0; i < cells; ++i) squares += (map[i] - t.mean) * (map[i] - t.mean);
  t.std = sqrt(squares / static_cast<double>(cells));
  t.threshold = t.mean - 0.6 * t.std;
  for (int64_t r = 0; r < grid; ++r) {
    int64_t in_row = 0;
    for (int64_t c = 0; c < grid; ++c) {
      const bool is_fg = map[r * grid + c] >= t.threshold;
      in_row += is_fg;
      if (!row_sorted_quirk) fg[r * grid + c] = is_fg;
    }
    if (row_sorted_quirk)
      for (int64_t c = 0; c < grid; ++c) fg[r * grid + c] = c >= grid - in_row;
    t.count += in_row;
  }
  return t;
}

// ---- raw level: contiguous (N, grid, grid) arrays ----
void saliency_foreground_cpu(uint8_t* foreground, const float* maps, int64_t N, int64_t grid, ForegroundRule rule);
void saliency_foreground_cuda(int device, uint8_t* foreground, const float* maps, int64_t N, int64_t grid,
                              ForegroundRule rule);

// ---- Tensor level: maps (N, G, G) f32 on the CPU or a GPU; the cells on the same device ----
Tensor saliency_foreground(const Tensor& maps, ForegroundRule rule);

}  // namespace engine
