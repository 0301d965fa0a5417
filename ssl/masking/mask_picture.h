// mask_picture.h - a picture of what the masking did to a batch, for people: one row per image,
// five tiles side by side:
//   query view | key view | q's saliency as a heat map over the query view, foreground cells
//   outlined | the masked query input | the (first) masked hard-negative input
// Views are un-normalised for display (ImageNet mean and std); high-passed inputs (hp) are shown
// as 0.5 + x / (6 std of the shown images' key inputs), clipped, so their edges and the noise are
// visible (MaskedBatch::high_passed). Without a saliency map (--saliency none: every cell
// foreground) the third tile is the query view with every cell outlined. A tile that does not
// exist (no hard negatives) is left gray. Written as JPEG, atomically.
// `moco masks` writes one; the trainer writes the first batch of every epoch to SAVE_DIR/images/.
#pragma once

#include <cstdint>
#include <string>

#include "engine/tensor.h"
#include "ssl/masking/masking.h"

namespace engine::ssl {

// Pixels between neighbouring tiles (white): the picture is 5 W + 4 s wide and rows H + (rows - 1) s
// high for (N, 3, H, W) views and s = kMaskPictureSeparator.
inline constexpr int kMaskPictureSeparator = 4;

struct MaskPictureOptions {
  int64_t rows = 8;  // images shown (the first ones of the batch)
  int quality = 90;  // JPEG quality
};

// query_view, key_view: the normalised views (N, 3, H, W) on any device; masked: from
// SaliencyGuidedMasking::mask for them.
void write_mask_picture(const std::string& path, const Tensor& query_view, const Tensor& key_view,
                        const MaskedBatch& masked, const MaskPictureOptions& options);

}  // namespace engine::ssl
