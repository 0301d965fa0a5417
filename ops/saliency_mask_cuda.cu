// saliency_mask_cuda.cu - the fused masking as one kernel. Block (b, n) works on image n: its
// threads load the image's foreground cells and the cell of every row and column, thread 0 draws
// the plan, the threads draw the cell keys and rank them (one (channel, cell) each), all into
// shared memory; then the block copies or replaces its share of the image's pixels. Every block of an image repeats the small plan (a few
// hundred Philox blocks), which costs less than a second launch and a trip through global memory.
// The plan functions are the CPU reference's (saliency_mask_plan.h), so the masks are identical.
#include "engine/cuda_common.cuh"
#include "ops/saliency_mask.h"

namespace engine {

namespace {

constexpr int kMaxCells = kSaliencyMaskMaxGrid * kSaliencyMaskMaxGrid;
constexpr int kMaxChannels = 3;
constexpr int kBlocksPerImage = 16;  // enough blocks to fill the GPU at a batch of 64 and up
constexpr int64_t kMaxGridY = 65535;  // CUDA's limit on gridDim.y

__global__ void saliency_mask_kernel(float* out, uint8_t* cells, uint8_t* focal, const float* x,
                                     const uint8_t* foreground, const float* fill, SaliencyMaskParams params) {
  // The stream offset is read here, when the kernel runs (a graph replay sees its current value),
  // once per thread rather than once per pixel.
  const SaliencyMaskParams p = mask_params_resolved(params);
  __shared__ uint8_t fg[kMaxCells];
  __shared__ uint8_t masks[kMaxChannels * kMaxCells];
  __shared__ uint32_t keys[kMaxChannels * kMaxCells];
  // Raw storage: a __shared__ variable gets no constructor run, and thread 0 writes it whole.
  alignas(MaskImagePlan) __shared__ unsigned char plan_storage[sizeof(MaskImagePlan)];
  MaskImagePlan& plan = *reinterpret_cast<MaskImagePlan*>(plan_storage);
  ENGINE_DYNAMIC_SHARED(uint8_t, cell_tables);  // H row cells, then W column cells
  uint8_t* row_cell = cell_tables;
  uint8_t* col_cell = cell_tables + p.H;
  const int64_t G2 = p.grid * p.grid;
  for (int64_t i = threadIdx.x; i < p.H; i += blockDim.x) row_cell[i] = static_cast<uint8_t>(cell_of(i, p.H, p.grid));
  for (int64_t i = threadIdx.x; i < p.W; i += blockDim.x) col_cell[i] = static_cast<uint8_t>(cell_of(i, p.W, p.grid));
  // Images n = blockIdx.y, + gridDim.y, ...: a batch may hold more images than a grid's y extent.
  for (int64_t n = blockIdx.y; n < p.N; n += gridDim.y) {
    __syncthreads();  // the previous image's pixels are done with the shared plan and masks
    for (int64_t i = threadIdx.x; i < G2; i += blockDim.x) fg[i] = foreground[n * G2 + i];
    __syncthreads();
    if (threadIdx.x == 0) plan = mask_image_plan(p, n, fg);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < p.C * G2; i += blockDim.x) keys[i] = cell_key(p, plan, n, i / G2, i % G2);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < p.C * G2; i += blockDim.x)
      masks[i] = cell_masked(plan, G2, keys + (i / G2) * G2, i % G2, fg);
    __syncthreads();
    if (blockIdx.x == 0) {
      for (int64_t i = threadIdx.x; i < p.C * G2; i += blockDim.x) cells[n * p.C * G2 + i] = masks[i];
      if (threadIdx.x == 0) focal[n] = plan.focal;
    }
    // 32-bit arithmetic within the image (the launcher checks that it fits).
    const int32_t W = static_cast<int32_t>(p.W), plane = static_cast<int32_t>(p.H * p.W);
    const int32_t per_image = static_cast<int32_t>(p.C) * plane;
    const float* x_image = x + n * per_image;
    float* out_image = out + n * per_image;
    for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < per_image; i += gridDim.x * blockDim.x) {
      const int32_t c = i / plane, rest = i - c * plane, y = rest / W, xx = rest - y * W;
      const int64_t cell_r = row_cell[y], cell_c = col_cell[xx];
      if (!pixel_replaced(p, plan, masks, c, cell_r, cell_c, y, xx)) {
        out_image[i] = x_image[i];
      } else if (p.fill == MaskFill::Noise) {
        const NoiseAddress a = mask_noise_address(p, plan, n, c, cell_r, cell_c, y, xx);
        out_image[i] = mask_noise_value(p, normal_element(p.seed, a.stream, a.element));
      } else {
        out_image[i] = mask_fill_value(p, fill, n, c, y, xx);
      }
    }
  }
}

}  // namespace

void saliency_mask_cuda(int device, float* out, uint8_t* cells, uint8_t* focal, const float* x,
                        const uint8_t* foreground, const float* fill, const SaliencyMaskParams& p) {
  if (p.N == 0) return;
  ENGINE_CHECK(p.C <= kMaxChannels && p.grid <= kSaliencyMaskMaxGrid,
               "saliency_mask_cuda: at most {} channels and a {}x{} grid, found {} and {}", kMaxChannels,
               kSaliencyMaskMaxGrid, kSaliencyMaskMaxGrid, p.C, p.grid);
  const int64_t per_image = p.C * p.H * p.W;
  ENGINE_CHECK(per_image < (int64_t{1} << 31) && p.H + p.W <= 32768,
               "saliency_mask_cuda: views of {}x{} are too large for the kernel's 32-bit pixel index", p.H, p.W);
  const int64_t wanted = (per_image + cuda::kBlock - 1) / cuda::kBlock;
  const dim3 grid(static_cast<unsigned>(wanted < kBlocksPerImage ? wanted : kBlocksPerImage),
                  static_cast<unsigned>(p.N < kMaxGridY ? p.N : kMaxGridY));
  const size_t tables = static_cast<size_t>(p.H + p.W);
  cuda::launch("saliency_mask_kernel", saliency_mask_kernel, grid, cuda::kBlock, tables, cuda::stream(device), out,
      cells, focal, x, foreground, fill, p);
}

}  // namespace engine
