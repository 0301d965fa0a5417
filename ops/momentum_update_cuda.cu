// momentum_update_cuda.cu - the key encoder's moving average as one grid-stride kernel over the
// flat buffer, rounding as the CPU reference does (see momentum_update.h).
#include "engine/cuda_common.cuh"
#include "engine/rounding.h"
#include "ops/momentum_update.h"

namespace engine {

namespace {

template <typename T>
__global__ void momentum_update_kernel(T* key, const T* query, int64_t n, T key_weight, T query_weight) {
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    key[i] = add_rn(mul_rn(key[i], key_weight), mul_rn(query[i], query_weight));
  }
}

}  // namespace

template <typename T>
void momentum_update_cuda(int device, T* key, const T* query, int64_t n, double m) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  cuda::launch("momentum_update_kernel", momentum_update_kernel<T>, cuda::elementwise_grid(n, cuda::kBlock),
      cuda::kBlock, 0, stream, key, query, n, static_cast<T>(m), static_cast<T>(1.0 - m));
}

template void momentum_update_cuda<float>(int, float*, const float*, int64_t, double);
template void momentum_update_cuda<double>(int, double*, const double*, int64_t, double);

}  // namespace engine
