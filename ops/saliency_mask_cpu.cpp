// saliency_mask_cpu.cpp - the reference loop of the fused masking: per image, the plan, the grid
// decisions for each channel, then every pixel copied or replaced.
#include <vector>

#include "ops/saliency_mask.h"

namespace engine {

void saliency_mask_cpu(float* out, uint8_t* cells, uint8_t* focal, const float* x, const uint8_t* foreground,
                       const float* fill, const SaliencyMaskParams& p) {
  const int64_t G2 = p.grid * p.grid, plane = p.H * p.W;
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
    for (int64_t c = 0; c < p.C; ++c) {
      const int64_t base = (n * p.C + c) * plane;
      for (int64_t y = 0; y < p.H; ++y)
        for (int64_t xx = 0; xx < p.W; ++xx) {
          const int64_t i = base + y * p.W + xx;
          out[i] = pixel_replaced(p, plan, masks, c, y, xx) ? replacement_value(p, plan, fill, n, c, y, xx) : x[i];
        }
    }
  }
}

}  // namespace engine
