// saliency_mask.h - the fused saliency-guided masking of METHOD.md section 5: a batch of views in, the
// masked views out, in one pass, for the three strategies and both modes.
//
// For each image n, from its own Philox draws (saliency_mask_plan.h lays them out) and its
// foreground cells FG (N, G, G) (ssl/masking/saliency.h), with rho = |FG| / G^2:
//   - hp (MaskFill::Noise), with probability 0.2 the focal mask: pos keeps a box of side
//     200 H / 224 at a uniform position and replaces everything outside it, neg replaces a box of
//     side 130 H / 224; saliency is ignored (METHOD.md 5.2).
//   - otherwise grid masking: m ~ U[0.05, 0.25] (pos) or U[0.40, 0.70] (neg); N_FG = round(G^2 m
//     rho) (hp: m rho capped at 0.55), N_BG = int(G^2 m) - N_FG in pos mode and 0 in neg mode
//     (mask_counts_wanted, then the list slicing of mask_counts_taken); that many FG and BG cells,
//     chosen uniformly, are replaced. hp draws "spatial" (probability 0.3: one set of cells for all
//     channels) or "channel" (each channel its own set); blur and mean use one set.
//   - replaced pixels take: hp, noise N(0, s^2) with s = 0.18 (pos) or 0.14 (neg), fresh per pixel
//     (with reference_quirks the published code's patches shared by a virtual GPU's images, O6;
//     the pos focal surround is fresh in both); blur, the same pixel of `blurred` (the strongly
//     blurred view); mean, the image's channel mean over the unmasked view.
// Every other pixel is copied unchanged. The same (seed, stream) gives the same masks and, for hp
// and blur, the same values on the CPU and on CUDA, bit for bit (mean's fill is a mean computed by
// each backend's reduction, equal to a few ulps).
//
// The stream may be moved by a value in memory: with `stream_offset` (a one-element i64 tensor on
// x's device) the call uses the streams from stream + stream_offset_scale * offset (modulo 2^64)
// on, and masks exactly as the call with `stream` set to that value and no offset. The offset is
// read where the masks are made (the CPU loop on the host, the CUDA kernel on the device), never by
// the host for a CUDA call, so a training step captured in a CUDA graph masks differently at each
// replay when the offset (the step counter, on the device) changes.
//
// reference_quirks selects the published code's O3 (a negative N_BG masks all BG cells but
// |N_BG|), O4 (a one-cell list is skipped), O5 (cap test at 0.56) and O6 (shared noise); the
// defaults are the clean rules of METHOD.md section 11.
//
// Outputs besides the views: `cells` (N, C, G, G) u8, 1 where grid masking replaced that channel
// of that cell, and `focal` (N) u8, 1 where the focal mask was used instead. No autograd: the
// views are data. Types: x f32 (N, 3, H, W) on the CPU or CUDA; G <= kSaliencyMaskMaxGrid.
#pragma once

#include "engine/tensor.h"
#include "ops/saliency_mask_plan.h"

namespace engine {

// ---- raw level: contiguous arrays; `out` may be `x` (each pixel is read before it is written);
// fill: N x C x H x W blurred pixels, N x C means (p.fill_is_mean) or null (noise) ----
void saliency_mask_cpu(float* out, uint8_t* cells, uint8_t* focal, const float* x, const uint8_t* foreground,
                       const float* fill, const SaliencyMaskParams& p);
void saliency_mask_cuda(int device, float* out, uint8_t* cells, uint8_t* focal, const float* x,
                        const uint8_t* foreground, const float* fill, const SaliencyMaskParams& p);

// ---- Tensor level ----
struct SaliencyMaskOptions {
  MaskFill fill = MaskFill::Noise;
  MaskMode mode = MaskMode::Positive;
  uint64_t seed = 0;
  uint64_t stream = 0;            // the call uses streams stream .. stream + kSaliencyMaskStreams - 1
  // Moves `stream` by stream_offset_scale * (the tensor's value) (see the header comment):
  // undefined means 0; defined, a one-element i64 tensor on x's device, which must stay alive and
  // unchanged until the call's kernel has run.
  Tensor stream_offset;
  uint64_t stream_offset_scale = 1;
  int64_t images_per_group = 0;   // virtual GPU size for the shared noise of O6 (0: the whole batch)
  // The batch's first image in the batch its draws come from: a rank's slice of the global batch
  // (rank r of N images each: r N) masks as those images would in one process.
  int64_t first_image = 0;
  bool reference_quirks = false;
};

// The kernels' parameters for views (N, 3, H, W) on a grid x grid map (what saliency_mask passes;
// tests use it to replay the plan of an image). A defined options.stream_offset is passed as a
// pointer to its element, not read: the plan functions read it, so host code can replay the plan
// only of an offset on the CPU (for a CUDA offset, replay with `stream` set to the effective
// value). The tensor is checked as saliency_mask checks it, except for its device.
SaliencyMaskParams saliency_mask_params(int64_t N, int64_t H, int64_t W, int64_t grid, const SaliencyMaskOptions& options);

struct SaliencyMaskResult {
  Tensor masked;  // (N, 3, H, W) f32
  Tensor cells;   // (N, 3, G, G) u8, on x's device
  Tensor focal;   // (N) u8, on x's device
};

// x (N, 3, H, W) f32; foreground (N, G, G) u8 (any device: copied to x's); blurred (N, 3, H, W)
// for MaskFill::Blur, else undefined.
SaliencyMaskResult saliency_mask(const Tensor& x, const Tensor& foreground, const Tensor& blurred,
                                 const SaliencyMaskOptions& options);

}  // namespace engine
