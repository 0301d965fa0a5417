// random_sort_cub.cu - randperm's stable pair sort through CUB's device radix sort (random.h).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "engine/random.h"

namespace engine {

void sort_pairs_by_key_cuda(int device, const uint64_t* keys_in, uint64_t* keys_out, const int64_t* values_in,
                            int64_t* values_out, int64_t n) {
  cudaStream_t stream = cuda::stream(device);
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, values_in, values_out,
                                             static_cast<int>(n), 0, 64, stream));
  CudaScratch<uint8_t> temp(device, std::max<size_t>(temp_bytes, 1));
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.ptr, temp_bytes, keys_in, keys_out, values_in, values_out,
                                             static_cast<int>(n), 0, 64, stream));
}

}  // namespace engine
