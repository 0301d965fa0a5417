// queue_enqueue.h - MoCo's dequeue-and-enqueue (METHOD.md section 6.2): the step's N keys replace
// the oldest N columns of the (D, K) queue, and the queue's pointer moves past them:
//     queue[:, (ptr + j) mod K] = keys[j, :]      for j in [0, N)
//     ptr = (ptr + N) mod K
// the reference's `queue[:, ptr:ptr + N] = keys.T; ptr = (ptr + N) % K`.
//
// The pointer is a one-element i64 tensor on the queue's device, read and advanced there, never by
// the host: a training step captured once as a CUDA graph then enqueues where the queue stands at
// each replay, and a step never waits for the device. The host checks shapes, dtypes and devices
// and that N divides K, but cannot check the pointer's value without reading it back, so the
// contract is the caller's: ptr is in [0, K), and a multiple of N for the reference's semantics.
// Starting at 0 (MoCo's queue) with K a multiple of N keeps it so. The columns are taken modulo K,
// so a pointer that is not a multiple of N (a checkpoint of another batch size) wraps around the
// queue's end instead of writing past a row; one outside [0, K) is the caller's error (MoCo's
// load_state_dict refuses it).
//
// Values are copied, not computed: CPU and CUDA give the same bits. The queue is a buffer with no
// gradient (like momentum_update's key): no autograd, and the Tensor level refuses keys that
// require grad while grad mode is on (compute them under NoGradGuard, as MoCo's key encoder runs,
// or pass keys.detach()). Types f32 and f64.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: queue (D, K) and keys (N, D) contiguous, *ptr on the same device as both (the
// host for the CPU) ----
template <typename T>
void queue_enqueue_cpu(T* queue, const T* keys, int64_t* ptr, int64_t D, int64_t K, int64_t N);
template <typename T>
void queue_enqueue_cuda(int device, T* queue, const T* keys, int64_t* ptr, int64_t D, int64_t K, int64_t N);

// ---- Tensor level ----
// queue: (D, K), f32 or f64, contiguous, written in place. keys: (N, D) with 1 <= N <= K and K a
// multiple of N, the queue's dtype and device; copied first when not contiguous or when it shares
// the queue's memory. ptr: one i64 element on the queue's device (a multiple of N in [0, K), see
// above), advanced in place.
void queue_enqueue(Tensor& queue, const Tensor& keys, Tensor& ptr);

}  // namespace engine
