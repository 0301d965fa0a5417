// queue_enqueue_cpu.cpp - the reference enqueue: a transposed copy of the keys into the queue's
// columns at the pointer, then the pointer's advance (see queue_enqueue.h).
#include "ops/queue_enqueue.h"

namespace engine {

template <typename T>
void queue_enqueue_cpu(T* queue, const T* keys, int64_t* ptr, int64_t D, int64_t K, int64_t N) {
  const int64_t p = *ptr;
  // Row d of the queue takes column d of the keys: contiguous writes of N values per row.
  for (int64_t d = 0; d < D; ++d)
    for (int64_t j = 0; j < N; ++j) queue[d * K + (p + j) % K] = keys[j * D + d];
  *ptr = (p + N) % K;
}

template void queue_enqueue_cpu<float>(float*, const float*, int64_t*, int64_t, int64_t, int64_t);
template void queue_enqueue_cpu<double>(double*, const double*, int64_t*, int64_t, int64_t, int64_t);

}  // namespace engine
