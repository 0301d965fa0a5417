// saliency_mask_cuda.cu - the fused masking as one kernel. Block (b, n) works on image n: its
// threads load the image's foreground cells, thread 0 draws the plan, the threads draw the cell
// keys and rank them (one (channel, cell) each), all into shared memory; then the block copies or
// replaces its share of the image's pixels. Every block of an image repeats the small plan (a few
// hundred Philox blocks), which costs less than a second launch and a trip through global memory.
// The plan functions are the CPU reference's (saliency_mask_plan.h), so the masks are identical.
#include "engine/cuda_common.cuh"
#include "ops/saliency_mask.h"

namespace engine {

namespace {

constexpr int kMaxCells = kSaliencyMaskMaxGrid * kSaliencyMaskMaxGrid;
constexpr int kMaxChannels = 3;
constexpr int kBlocksPerImage = 16;  // enough blocks to fill the GPU at a batch of 64 and up

__global__ void saliency_mask_kernel(float* out, uint8_t* cells, uint8_t* focal, const float* x,
                                     const uint8_t* foreground, const float* fill, SaliencyMaskParams p) {
  __shared__ uint8_t fg[kMaxCells];
  __shared__ uint8_t masks[kMaxChannels * kMaxCells];
  __shared__ uint32_t keys[kMaxChannels * kMaxCells];
  __shared__ MaskImagePlan plan;
  const int64_t n = blockIdx.y, G2 = p.grid * p.grid;
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
  const int64_t per_image = p.C * p.H * p.W;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < per_image;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xx = i % p.W, y = (i / p.W) % p.H, c = i / (p.W * p.H);
    const int64_t at = n * per_image + i;
    out[at] = pixel_replaced(p, plan, masks, c, y, xx) ? replacement_value(p, plan, fill, n, c, y, xx) : x[at];
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
  const int64_t wanted = (per_image + cuda::kBlock - 1) / cuda::kBlock;
  const dim3 grid(static_cast<unsigned>(wanted < kBlocksPerImage ? wanted : kBlocksPerImage),
                  static_cast<unsigned>(p.N));
  saliency_mask_kernel<<<grid, cuda::kBlock, 0, cuda::stream(device)>>>(out, cells, focal, x, foreground, fill, p);
  CUDA_CHECK_LAUNCH("saliency_mask_kernel");
}

}  // namespace engine
