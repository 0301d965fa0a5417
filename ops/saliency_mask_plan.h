// saliency_mask_plan.h - what the masking of one image does, as pure functions of the random
// stream, shared by the CPU reference and the CUDA kernel (host and device code), so both draw the
// same masks bit for bit. The contract is in saliency_mask.h; the method is METHOD.md section 5.
//
// Random layout. A call uses five consecutive Philox streams of `seed` from its first stream on,
// `stream` below: p.stream moved by the offset in memory, if any (mask_first_stream).
// Image n of a call is image first_image + n of the batch its draws come from (a rank's slice of the
// global batch draws as those images would in one process); below, n is that index.
//   stream      the plan: image n owns the blocks [n * B, (n + 1) * B), B = plan_blocks(C, grid); its
//               words are  0: focal draw u1   1: spatial/channel draw u2   2: ratio m
//                          3: focal box top   4: focal box left   8 + c * G^2 + p: the sort key
//               of cell p for channel c (the shuffle of METHOD.md 5.1: a cell list sorted by key)
//   stream + 1  fresh noise, element (n, c, y, x) of an (N, C, H, W) draw (normal, random.h's
//               layout): every masked pixel of the clean variant, and the pos focal surround
//   stream + 2  the shared spatial-noise patch of a virtual GPU g, element (g, c, y', x') of a
//               (groups, C, P, P) draw, y', x' the pixel's place in its cell (METHOD.md O6, quirks only)
//   stream + 3  the shared channel-noise patch, laid out as stream + 2
//   stream + 4  the shared neg focal block, element (g, c, y', x') of a (groups, C, S, S) draw
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/philox.h"
#include "engine/rounding.h"

namespace engine {

enum class MaskFill : uint8_t { Noise, Blur, Mean };   // the strategies hp, blur, mean
enum class MaskMode : uint8_t { Positive, Negative };  // pos (the query), neg (a hard negative)

constexpr int kSaliencyMaskMaxGrid = 16;  // cells per side the kernels take (224 px at stride 32: 7)
constexpr int kSaliencyMaskStreams = 5;   // Philox streams one call uses, from `stream` on

// Everything the kernels need, by value, except the stream offset: a step captured in a CUDA graph
// replays the launch with these values as they were at capture, so what changes per step (the
// stream) must come from memory the kernel reads.
struct SaliencyMaskParams {
  int64_t N = 0, C = 3, H = 0, W = 0, grid = 0;
  MaskFill fill = MaskFill::Noise;
  MaskMode mode = MaskMode::Positive;
  bool quirks = false;            // O3, O4, O5, O6 as the published code
  uint64_t seed = 0, stream = 0;
  // The first stream is stream + stream_offset_scale * *stream_offset (modulo 2^64); the offset is
  // read where the masks are made (the host for the CPU loop, the device for the kernel); null: 0.
  const int64_t* stream_offset = nullptr;
  uint64_t stream_offset_scale = 1;
  int64_t images_per_group = 0;   // O6: the noise patches are shared by this many images
  int64_t first_image = 0;        // the index of image 0 in the batch the draws come from
  bool fill_is_mean = false;      // fill holds (N, C) means instead of (N, C, H, W) pixels
};

// The method's constants per mode (METHOD.md 5.1, 5.2), focal sides at 224 pixels.
struct MaskModeConstants {
  double ratio_low, ratio_high, noise_std, focal_side_224;
};
ENGINE_HD inline MaskModeConstants mask_mode_constants(MaskMode mode) {
  return mode == MaskMode::Positive ? MaskModeConstants{0.05, 0.25, 0.18, 200.0}
                                    : MaskModeConstants{0.40, 0.70, 0.14, 130.0};
}
constexpr double kFocalProbability = 0.2;   // hp only: the focal mask instead of the grid
constexpr double kSpatialProbability = 0.3; // hp grid: all channels share the cells (else per channel)
constexpr double kForegroundCap = 0.55;     // hp: m * rho is capped here (METHOD.md O5)

// Cell p = (r, c) of a G x G grid over H x W covers rows [r H / G, (r + 1) H / G) and the
// columns likewise (integer division: the cells tile the image, 32 x 32 each at 224 / 7).
ENGINE_HD inline int64_t cell_start(int64_t index, int64_t extent, int64_t grid) { return index * extent / grid; }
ENGINE_HD inline int64_t cell_of(int64_t pixel, int64_t extent, int64_t grid) {
  int64_t cell = pixel * grid / extent;  // a first guess, corrected by at most one
  while (cell + 1 < grid && cell_start(cell + 1, extent, grid) <= pixel) ++cell;
  while (cell > 0 && cell_start(cell, extent, grid) > pixel) --cell;
  return cell;
}
// The largest cell side: the shared noise patches have this size.
ENGINE_HD inline int64_t max_cell_side(int64_t extent, int64_t grid) { return (extent + grid - 1) / grid; }

ENGINE_HD inline int64_t plan_blocks(int64_t channels, int64_t grid) { return 2 + (channels * grid * grid + 3) / 4; }

// The call's first stream, the only place the offset is read: unsigned arithmetic wraps modulo
// 2^64, so a negative offset moves the stream back.
ENGINE_HD inline uint64_t mask_first_stream(const SaliencyMaskParams& p) {
  return p.stream_offset ? p.stream + p.stream_offset_scale * static_cast<uint64_t>(*p.stream_offset) : p.stream;
}

// The same parameters with the offset folded into `stream` (and the pointer cleared): each backend
// resolves once, before its loop over pixels, so the functions below, which call
// mask_first_stream, read the offset once per image or thread instead of once per pixel.
ENGINE_HD inline SaliencyMaskParams mask_params_resolved(const SaliencyMaskParams& p) {
  SaliencyMaskParams resolved = p;
  resolved.stream = mask_first_stream(p);
  resolved.stream_offset = nullptr;
  return resolved;
}

ENGINE_HD inline uint32_t plan_word(const SaliencyMaskParams& p, int64_t n, int64_t word) {
  uint32_t w[4];
  const int64_t image = p.first_image + n;
  philox::block_words(p.seed, mask_first_stream(p), static_cast<uint64_t>(image * plan_blocks(p.C, p.grid) + word / 4),
                      w);
  return w[word % 4];
}

// Cells to mask, per channel, for a drawn ratio m and |FG| of G^2 cells (METHOD.md 5.1 and the table
// of 12.4): hp caps m rho and works in double (Python floats); blur and mean in float32 (torch).
// `fg_cells` and `bg_cells` are the wanted counts; n_bg < 0 is possible (METHOD.md O3).
struct MaskCounts {
  int64_t fg_cells, bg_cells;
};
ENGINE_HD inline MaskCounts mask_counts_wanted(MaskFill fill, MaskMode mode, double m, int64_t fg, int64_t cells,
                                               bool quirks) {
  const double rho = static_cast<double>(fg) / static_cast<double>(cells);
  int64_t n_fg, total;
  if (fill == MaskFill::Noise) {
    double masked_fg = mul_rn(m, rho);
    if (masked_fg >= (quirks ? 0.56 : kForegroundCap)) masked_fg = kForegroundCap;
    n_fg = static_cast<int64_t>(rint(mul_rn(static_cast<double>(cells), masked_fg)));  // half to even
    total = static_cast<int64_t>(mul_rn(static_cast<double>(cells), m));                // truncation
  } else {
    const float mf = static_cast<float>(m);
    const float scaled = static_cast<float>(mf * static_cast<float>(rho)) * static_cast<float>(cells);
    n_fg = static_cast<int64_t>(rintf(scaled));
    total = static_cast<int64_t>(static_cast<float>(static_cast<float>(cells) * mf));
  }
  return {n_fg, mode == MaskMode::Negative ? 0 : total - n_fg};
}

// The counts actually masked, after the published code's list slicing: a request beyond a list
// takes all of it; a negative N_BG takes all BG cells but |N_BG| with quirks (O3), none without;
// with quirks a one-cell list counts as empty (O4).
ENGINE_HD inline MaskCounts mask_counts_taken(MaskCounts wanted, int64_t fg, int64_t cells, bool quirks) {
  const int64_t bg = cells - fg;
  int64_t take_fg = wanted.fg_cells < fg ? wanted.fg_cells : fg;
  int64_t take_bg;
  if (wanted.bg_cells < 0) {
    take_bg = quirks && bg + wanted.bg_cells > 0 ? bg + wanted.bg_cells : 0;
  } else {
    take_bg = wanted.bg_cells < bg ? wanted.bg_cells : bg;
  }
  if (quirks && fg == 1) take_fg = 0;
  if (quirks && bg == 1) take_bg = 0;
  if (take_fg < 0) take_fg = 0;
  return {take_fg, take_bg};
}

// One image's decisions (the cells come from cell_masked below).
struct MaskImagePlan {
  bool focal = false;        // hp: the focal mask instead of the grid
  int64_t top = 0, left = 0, box_h = 0, box_w = 0;  // the focal box
  bool channelwise = false;  // hp grid: each channel draws its own cells
  double ratio = 0;          // m
  int64_t fg = 0;            // |FG| of the image's map
  MaskCounts taken{0, 0};    // cells masked per channel (foreground, background)
};

ENGINE_HD inline MaskImagePlan mask_image_plan(const SaliencyMaskParams& p, int64_t n, const uint8_t* foreground) {
  const int64_t cells = p.grid * p.grid;
  const MaskModeConstants k = mask_mode_constants(p.mode);
  MaskImagePlan plan;
  for (int64_t i = 0; i < cells; ++i) plan.fg += foreground[i] ? 1 : 0;
  if (p.fill == MaskFill::Noise) {
    plan.focal = philox::uniform24(plan_word(p, n, 0)) < kFocalProbability;
    plan.channelwise = !(philox::uniform24(plan_word(p, n, 1)) < kSpatialProbability);
    plan.ratio = add_rn(k.ratio_low, mul_rn(philox::uniform32(plan_word(p, n, 2)),
                                                            add_rn(k.ratio_high, -k.ratio_low)));
  } else {
    // float32 as torch's uniform_: low + u (high - low), each operation rounded to float.
    const float u = static_cast<float>(philox::uniform24(plan_word(p, n, 2)));
    const float span = static_cast<float>(k.ratio_high) - static_cast<float>(k.ratio_low);
    plan.ratio = add_rn(static_cast<float>(k.ratio_low), mul_rn(u, span));
  }
  // The focal box: side scaled from 224 pixels (rounded half to even), at a uniform position.
  plan.box_h = static_cast<int64_t>(rint(k.focal_side_224 * static_cast<double>(p.H) / 224.0));
  plan.box_w = static_cast<int64_t>(rint(k.focal_side_224 * static_cast<double>(p.W) / 224.0));
  plan.box_h = plan.box_h < 1 ? 1 : (plan.box_h > p.H ? p.H : plan.box_h);
  plan.box_w = plan.box_w < 1 ? 1 : (plan.box_w > p.W ? p.W : plan.box_w);
  plan.top = static_cast<int64_t>(philox::uniform32(plan_word(p, n, 3)) * static_cast<double>(p.H - plan.box_h + 1));
  plan.left = static_cast<int64_t>(philox::uniform32(plan_word(p, n, 4)) * static_cast<double>(p.W - plan.box_w + 1));
  plan.taken = mask_counts_taken(mask_counts_wanted(p.fill, p.mode, plan.ratio, plan.fg, cells, p.quirks), plan.fg,
                                 cells, p.quirks);
  return plan;
}

// The shuffle key of cell `cell` for channel c: channel c's own keys when channelwise, else
// channel 0's for every channel (METHOD.md 5.2: spatial masking picks one set of cells).
ENGINE_HD inline uint32_t cell_key(const SaliencyMaskParams& p, const MaskImagePlan& plan, int64_t n, int64_t c,
                                   int64_t cell) {
  const int64_t key_channel = plan.channelwise ? c : 0;
  return plan_word(p, n, 8 + key_channel * p.grid * p.grid + cell);
}

// Whether grid masking masks a cell, given the keys of its channel (G^2 of them): the cell's list
// (FG or BG) sorted by key is the shuffle, and the first `taken` of it are masked. The rank is
// the number of cells of the same list with a smaller (key, index).
ENGINE_HD inline bool cell_masked(const MaskImagePlan& plan, int64_t cells, const uint32_t* keys, int64_t cell,
                                  const uint8_t* foreground) {
  if (plan.focal) return false;
  const bool fg = foreground[cell] != 0;
  const int64_t take = fg ? plan.taken.fg_cells : plan.taken.bg_cells;
  if (take <= 0) return false;
  const uint32_t key = keys[cell];
  int64_t rank = 0;
  for (int64_t other = 0; other < cells && rank < take; ++other) {
    if ((foreground[other] != 0) != fg || other == cell) continue;
    if (keys[other] < key || (keys[other] == key && other < cell)) ++rank;
  }
  return rank < take;
}

// Whether pixel (y, x) lies in the focal region that is replaced: outside the box for pos,
// inside for neg.
ENGINE_HD inline bool focal_replaces(const SaliencyMaskParams& p, const MaskImagePlan& plan, int64_t y, int64_t x) {
  const bool inside = y >= plan.top && y < plan.top + plan.box_h && x >= plan.left && x < plan.left + plan.box_w;
  return p.mode == MaskMode::Positive ? !inside : inside;
}

// Element i of a standard normal draw of `stream` (random.h's layout: Box-Muller on word pairs).
ENGINE_HD inline double normal_element(uint64_t seed, uint64_t stream, int64_t i) {
  uint32_t w[4];
  philox::block_words(seed, stream, static_cast<uint64_t>(i / 4), w);
  const int pair = static_cast<int>(i % 4) & ~1;
  double z0, z1;
  philox::normal_pair(w[pair], w[pair + 1], z0, z1);
  return (i % 2 == 0) ? z0 : z1;
}

// The same numbers, four at a time: neighbouring pixels share a Philox block, so a loop over a
// row computes each block once (the CPU loop; a GPU thread takes pixels far apart).
struct NormalBlockCache {
  uint64_t stream = ~0ull, block = ~0ull;
  double z[4] = {0, 0, 0, 0};
  ENGINE_HD double get(uint64_t seed, uint64_t s, int64_t i) {
    const uint64_t b = static_cast<uint64_t>(i / 4);
    if (s != stream || b != block) {
      uint32_t w[4];
      philox::block_words(seed, s, b, w);
      philox::normal_pair(w[0], w[1], z[0], z[1]);
      philox::normal_pair(w[2], w[3], z[2], z[3]);
      stream = s;
      block = b;
    }
    return z[i % 4];
  }
};

// Whether pixel (c, y, x) of an image is replaced, given its plan, its grid decisions
// (`cell_masks`: C x G^2, 1 = masked) and the pixel's cell row and column (cell_of(y), cell_of(x)).
ENGINE_HD inline bool pixel_replaced(const SaliencyMaskParams& p, const MaskImagePlan& plan, const uint8_t* cell_masks,
                                     int64_t c, int64_t cell_r, int64_t cell_c, int64_t y, int64_t x) {
  if (plan.focal) return focal_replaces(p, plan, y, x);
  return cell_masks[(c * p.grid + cell_r) * p.grid + cell_c] != 0;
}

// Where the noise of a replaced pixel (n, c, y, x) comes from (hp): element `element` of the
// normal draw of `stream`. Fresh per pixel, except with quirks (O6): grid cells take the group's
// spatial or channel patch at the pixel's place in its cell, and the neg focal box the group's
// block at the pixel's place in the box.
struct NoiseAddress {
  uint64_t stream;
  int64_t element;
};
ENGINE_HD inline NoiseAddress mask_noise_address(const SaliencyMaskParams& p, const MaskImagePlan& plan, int64_t n,
                                                 int64_t c, int64_t cell_r, int64_t cell_c, int64_t y, int64_t x) {
  const bool shared = p.quirks && !(plan.focal && p.mode == MaskMode::Positive);
  const int64_t image = p.first_image + n;
  const uint64_t first = mask_first_stream(p);
  if (!shared) return {first + 1, ((image * p.C + c) * p.H + y) * p.W + x};
  const int64_t group = p.images_per_group > 0 ? image / p.images_per_group : 0;
  if (plan.focal) {  // neg: the focal block
    return {first + 4, ((group * p.C + c) * plan.box_h + (y - plan.top)) * plan.box_w + (x - plan.left)};
  }
  const int64_t ph = max_cell_side(p.H, p.grid), pw = max_cell_side(p.W, p.grid);
  const int64_t dy = y - cell_start(cell_r, p.H, p.grid), dx = x - cell_start(cell_c, p.W, p.grid);
  return {first + (plan.channelwise ? 3 : 2), ((group * p.C + c) * ph + dy) * pw + dx};
}

// The noise value for a standard normal z: s z, s = 0.18 (pos) or 0.14 (neg), rounded to float.
ENGINE_HD inline float mask_noise_value(const SaliencyMaskParams& p, double z) {
  return static_cast<float>(mul_rn(mask_mode_constants(p.mode).noise_std, z));
}

// The fill of blur (the blurred view's pixel) and mean (the image's channel mean; `fill` then
// holds N x C means).
ENGINE_HD inline float mask_fill_value(const SaliencyMaskParams& p, const float* fill, int64_t n, int64_t c, int64_t y,
                                       int64_t x) {
  if (p.fill_is_mean) return fill[n * p.C + c];
  return fill[((n * p.C + c) * p.H + y) * p.W + x];
}

}  // namespace engine
