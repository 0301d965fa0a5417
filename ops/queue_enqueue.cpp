// queue_enqueue.cpp - checks and dispatch of MoCo's enqueue (no autograd; the pointer is never read
// here, see queue_enqueue.h).
#include "ops/queue_enqueue.h"

#include "engine/autograd.h"

namespace engine {

void queue_enqueue(Tensor& queue, const Tensor& keys, Tensor& ptr) {
  check_defined(queue, "queue_enqueue", "queue");
  check_defined(keys, "queue_enqueue", "keys");
  check_defined(ptr, "queue_enqueue", "ptr");
  ENGINE_CHECK(queue.dim() == 2, "queue_enqueue: expected a (D, K) queue, found {}", queue.str());
  const int64_t D = queue.size(0), K = queue.size(1);
  ENGINE_CHECK(keys.dim() == 2 && keys.size(1) == D,
               "queue_enqueue: expected keys of shape (N, {}) for the queue {}, found {}; the queue holds one key "
               "per column",
               D, queue.str(), keys.str());
  const int64_t N = keys.size(0);
  ENGINE_CHECK(N >= 1 && N <= K && K % N == 0,
               "queue_enqueue: the queue's length K = {} must be a multiple of the number of keys N = {} (and N >= "
               "1), so that every enqueue fills whole columns up to the end; choose the queue length (--moco-k) as "
               "a multiple of the global batch",
               K, N);
  check_same_dtype(queue, keys, "queue_enqueue");
  check_same_device(queue, keys, "queue_enqueue");
  ENGINE_CHECK(ptr.dtype() == DType::i64 && ptr.numel() == 1,
               "queue_enqueue: the pointer must be a one-element i64 tensor, found {}; make it with "
               "Tensor::zeros({{1}}, DType::i64, device)",
               ptr.str());
  ENGINE_CHECK(ptr.device() == queue.device(),
               "queue_enqueue: the pointer {} must be on the queue's device {} (it is read and advanced there); make "
               "it on that device",
               ptr.str(), queue.device().str());
  check_inplace_allowed(queue, "queue_enqueue");
  ENGINE_CHECK(!(GradMode::enabled() && keys.requires_grad()),
               "queue_enqueue: the keys {} require grad, but the queue is a buffer without gradient; compute them "
               "under NoGradGuard (as MoCo's key encoder does) or pass keys.detach()",
               keys.str());
  ENGINE_CHECK(queue.is_contiguous(),
               "queue_enqueue: the queue is written in place and must be contiguous, found {} with strides {}; pass "
               "a contiguous (D, K) tensor",
               queue.str(), shape_str(queue.strides()));
  // The kernels read the keys as contiguous rows, and must not read columns they are writing.
  Tensor k = keys.detach().contiguous();
  if (k.storage() == queue.storage()) k = k.clone();
  dispatch_float(queue.dtype(), "queue_enqueue", [&]<typename T>() {
    if (queue.device().is_cpu()) {
      queue_enqueue_cpu<T>(queue.data<T>(), k.data<T>(), ptr.data<int64_t>(), D, K, N);
    } else {
      ENGINE_DISPATCH_CUDA(queue.device(), "queue_enqueue",
                           queue_enqueue_cuda<T>(queue.device().index, queue.data<T>(), k.data<T>(),
                                                 ptr.data<int64_t>(), D, K, N));
    }
  });
}

}  // namespace engine
