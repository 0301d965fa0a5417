// saliency_foreground_cpu.cpp - CPU reference of saliency_foreground (see saliency_foreground.h).
#include "ops/saliency_foreground.h"

namespace engine {

void saliency_foreground_cpu(uint8_t* foreground, const float* maps, int64_t N, int64_t grid, ForegroundRule rule) {
  const int64_t cells = grid * grid;
  for (int64_t n = 0; n < N; ++n)
    foreground_of_map(foreground + n * cells, maps + n * cells, grid, rule == ForegroundRule::RowSortedQuirk);
}

}  // namespace engine
