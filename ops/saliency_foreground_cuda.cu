// saliency_foreground_cuda.cu - saliency_foreground on CUDA: one thread per map. A batch holds a
// few hundred maps of 49 values, so this is about keeping the maps on the GPU (no copy to the host
// and back per step), not about throughput.
#include "engine/cuda_common.cuh"
#include "ops/saliency_foreground.h"

namespace engine {

namespace {

__global__ void saliency_foreground_kernel(uint8_t* foreground, const float* maps, int64_t N, int64_t grid,
                                           bool row_sorted_quirk) {
  const int64_t cells = grid * grid;
  ENGINE_GRID_STRIDE_LOOP(n, N) foreground_of_map(foreground + n * cells, maps + n * cells, grid, row_sorted_quirk);
}

}  // namespace

void saliency_foreground_cuda(int device, uint8_t* foreground, const float* maps, int64_t N, int64_t grid,
                              ForegroundRule rule) {
  if (N == 0) return;
  cuda::launch("saliency_foreground_kernel", saliency_foreground_kernel, cuda::elementwise_grid(N, cuda::kBlock),
      cuda::kBlock, 0, cuda::stream(device), foreground, maps, N, grid, rule == ForegroundRule::RowSortedQuirk);
}

}  // namespace engine
