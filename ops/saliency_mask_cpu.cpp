// saliency_mask_cpu.cpp - the reference loop of the fused masking: per image, the plan, the grid
// decisions for each channel, then every pixel copied or replaced, row by row (the cell of each
// row and column looked up once; the noise of neighbouring pixels from one Philox block).
#include <vector>

#include "engine/check.h"
#include "ops/saliency_mask.h"

namespace engine {

void saliency_mask_cpu(float* out, uint8_t* cells, uint8_t* focal, const float* x, const uint8_t* foreground,
                       const float* fill, const SaliencyMaskParams& params) {
  // The stream offset, a CPU value here, read once for the whole batch.
  const SaliencyMaskParams p = mask_params_resolved(params);
  ENGINE_CHECK(p.grid >= 1 && p.grid <= kSaliencyMaskMaxGrid && p.C >= 1,
               "saliency_mask_cpu: expected a 1 to {} cell grid and at least one channel, found {} and {}",
               kSaliencyMaskMaxGrid, p.grid, p.C);
  const int64_t G2 = p.grid * p.grid, plane = p.H * p.W;
  std::vector<int64_t> row_cell(static_cast<size_t>(p.H)), col_cell(static_cast<size_t>(p.W));
  for (int64_t y = 0; y < p.H; ++y) row_cell[static_cast<size_t>(y)] = cell_of(y, p.H, p.grid);
  for (int64_t xx = 0; xx < p.W; ++xx) col_cell[static_cast<size_t>(xx)] = cell_of(xx, p.W, p.grid);
#pragma omp parallel for schedule(dynamic)
  for (int64_t n = 0; n < p.N; ++n) {
    const uint8_t* fg = foreground + n * G2;
    const MaskImagePlan plan = mask_image_plan(p, n, fg);
    uint8_t* masks = cells + n * p.C * G2;  // (C, G^2)
    std::vector<uint32_t> keys(static_cast<size_t>(G2));
    for (int64_t c = 0; c < p.C; ++c) {
      for (int64_t cell = 0; cell < G2; ++cell) keys[static_cast<size_t>(cell)] = cell_key(p, plan, n, c, cell);
      for (int64_t cell = 0; cell < G2; ++cell) masks[c * G2 + cell] = cell_masked(plan, G2, keys.data(), cell, fg);
    }
    focal[n] = plan.focal;
    NormalBlockCache noise;
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t y = 0; y < p.H; ++y) {
        const int64_t cell_r = row_cell[static_cast<size_t>(y)], row = (n * p.C + c) * plane + y * p.W;
        for (int64_t xx = 0; xx < p.W; ++xx) {
          const int64_t cell_c = col_cell[static_cast<size_t>(xx)];
          if (!pixel_replaced(p, plan, masks, c, cell_r, cell_c, y, xx)) {
            out[row + xx] = x[row + xx];
          } else if (p.fill == MaskFill::Noise) {
            const NoiseAddress a = mask_noise_address(p, plan, n, c, cell_r, cell_c, y, xx);
            out[row + xx] = mask_noise_value(p, noise.get(p.seed, a.stream, a.element));
          } else {
            out[row + xx] = mask_fill_value(p, fill, n, c, y, xx);
          }
        }
      }
  }
}

}  // namespace engine
