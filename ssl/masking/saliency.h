// saliency.h - from a saliency map to the foreground cells that masking works with (METHOD.md 4.3).
//
// A map M is the encoder's final feature map summed over channels: G x G values per image (7 x 7
// for ResNet-50 at 224 pixels; cell (r, c) covers the input patch of side image/G at row r,
// column c). With mu the mean and sigma the population standard deviation of the G^2 values,
// a cell is foreground when M(r, c) >= tau = mu - 0.6 sigma, and the foreground ratio is
// |FG| / G^2. For any map 13 <= |FG| <= 49 at G = 7 (Cantelli's inequality).
//
// The published code (METHOD.md O1) tests each value in a row-sorted copy of the map, so the count of
// foreground cells per row is right but they are always the row's rightmost ones:
// FG(r, c) = [c >= G - n_r], n_r = #{c : M(r, c) >= tau}. The default is the rule as the paper
// states it; `RowSortedQuirk` reproduces the code (--reference-quirks).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"
#include "ops/saliency_foreground.h"

namespace engine::ssl {

// The saliency maps of a batch: feature_map (N, C, G, G), e.g. ResNet::feature_map, summed over
// its channels: (N, G, G).
Tensor saliency_maps(const Tensor& feature_map);

struct ForegroundCells {
  std::vector<uint8_t> foreground;  // G * G, row-major, 1 for a foreground cell
  int64_t count = 0;                // |FG|
  double ratio = 0;                 // |FG| / G^2
  double mean = 0, std = 0, threshold = 0;
};

// One map of grid * grid values on the host, row-major, with its statistics (for the pictures and
// tests; the step uses the op below). Statistics in double (the reference's float32 sums differ
// only in the last bits; ties with tau are measure-zero).
ForegroundCells foreground_cells(const float* map, int64_t grid, ForegroundRule rule);

// maps: (N, G, G) f32 on any device; the foreground cells (N, G, G) u8 on the same device
// (ops/saliency_foreground.h: nothing is read back to the host).
Tensor foreground_cells(const Tensor& maps, ForegroundRule rule);

}  // namespace engine::ssl
