// queue_enqueue_cuda.cu - the enqueue as two launches in stream order: a grid-stride copy of the
// keys into the N columns at the pointer, then one thread advancing the pointer (queue_enqueue.h).
#include "engine/cuda_common.cuh"
#include "ops/queue_enqueue.h"

namespace engine {

namespace {

// Element e of the D x N block being written: row d = e / N, column ptr + j with j = e % N, so
// consecutive threads write consecutive columns of one row (coalesced); the keys are read with
// stride D. MoCo's block is small (128 x 256 values), so a shared-memory transpose would not pay.
template <typename T>
__global__ void queue_write_kernel(T* queue, const T* keys, const int64_t* ptr, int64_t D, int64_t K, int64_t N) {
  const int64_t p = *ptr;
  ENGINE_GRID_STRIDE_LOOP(e, D * N) {
    const int64_t d = e / N, j = e % N;
    queue[d * K + (p + j) % K] = keys[j * D + d];
  }
}

// A kernel of its own, launched after the write: every block of queue_write_kernel must read the
// old pointer, and blocks of one launch run in no fixed order with no barrier across the grid, so
// a block that advanced the pointer inside the write kernel could run before another block has
// read it, which would then write its columns N further on. Stream order makes this launch start
// only after every block of the write has finished.
__global__ void queue_advance_kernel(int64_t* ptr, int64_t K, int64_t N) { *ptr = (*ptr + N) % K; }

}  // namespace

template <typename T>
void queue_enqueue_cuda(int device, T* queue, const T* keys, int64_t* ptr, int64_t D, int64_t K, int64_t N) {
  cudaStream_t stream = cuda::stream(device);
  if (D > 0) {
    cuda::launch("queue_write_kernel", queue_write_kernel<T>, cuda::elementwise_grid(D * N, cuda::kBlock),
        cuda::kBlock, 0, stream, queue, keys, ptr, D, K, N);
  }
  cuda::launch("queue_advance_kernel", queue_advance_kernel, 1, 1, 0, stream, ptr, K, N);
}

template void queue_enqueue_cuda<float>(int, float*, const float*, int64_t*, int64_t, int64_t, int64_t);
template void queue_enqueue_cuda<double>(int, double*, const double*, int64_t*, int64_t, int64_t, int64_t);

}  // namespace engine
