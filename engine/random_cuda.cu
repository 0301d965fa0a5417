// random_cuda.cu - the random fills (one thread per Philox block), randperm (radix sort of the
// per-index keys, stable, so ties keep index order exactly as the CPU's sort does: CUB's in
// random_sort_cub.cu) and the inverse of a permutation (one scatter).
#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "engine/random_fill.h"

namespace engine {

namespace {

template <typename T>
__global__ void random_fill_kernel(T* out, int64_t n, RandomParams params) {
  ENGINE_GRID_STRIDE_LOOP(block, (n + 3) / 4) { random_fill_block(out, n, block, params); }
}

// stream_offset (null: 0) is read here, when the kernel runs, not by the host at launch.
__global__ void randperm_keys_kernel(uint64_t* keys, int64_t* indices, int64_t n, uint64_t seed, uint64_t stream,
                                     uint64_t first_block, const int64_t* stream_offset) {
  const uint64_t moved = randperm_stream(stream, stream_offset);
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    keys[i] = randperm_key(i, seed, moved, first_block);
    indices[i] = i;
  }
}

__global__ void inverse_permutation_kernel(int64_t* inverse, const int64_t* perm, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) inverse[perm[i]] = i;
}

}  // namespace

void random_fill_cuda(int device, void* out, DType dtype, int64_t n, const RandomParams& params) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  const int64_t blocks = (n + 3) / 4;
  dispatch_dtype(dtype, [&]<typename T>() {
    cuda::launch("random_fill_kernel", random_fill_kernel<T>, cuda::elementwise_grid(blocks, cuda::kBlock),
        cuda::kBlock, 0, stream, static_cast<T*>(out), n, params);
  });
}

void randperm_cuda(int device, int64_t* out, int64_t n, uint64_t seed, uint64_t stream_id, uint64_t first_block,
                   const int64_t* stream_offset) {
  if (n == 0) return;
  ENGINE_CHECK(n < (int64_t{1} << 31), "randperm on CUDA supports n < 2^31, found {}", n);
  cudaStream_t stream = cuda::stream(device);
  const size_t count = static_cast<size_t>(n);
  CudaScratch<uint64_t> keys_in(device, count), keys_out(device, count);
  CudaScratch<int64_t> indices_in(device, count);
  cuda::launch("randperm_keys_kernel", randperm_keys_kernel, cuda::elementwise_grid(n, cuda::kBlock), cuda::kBlock, 0,
      stream, keys_in.ptr, indices_in.ptr, n, seed, stream_id, first_block, stream_offset);
  sort_pairs_by_key_cuda(device, keys_in.ptr, keys_out.ptr, indices_in.ptr, out, n);
}

void inverse_permutation_cuda(int device, int64_t* inverse, const int64_t* perm, int64_t n) {
  if (n == 0) return;
  cuda::launch("inverse_permutation_kernel", inverse_permutation_kernel, cuda::elementwise_grid(n, cuda::kBlock),
      cuda::kBlock, 0, cuda::stream(device), inverse, perm, n);
}

}  // namespace engine
