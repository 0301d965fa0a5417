// stream_fence_cuda.cpp - StreamFence's CUDA events (see stream_fence.h).
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "engine/stream_fence.h"

namespace engine {

namespace {
cudaStream_t stream_of(int device, StreamKind kind) {
  return kind == StreamKind::Copy ? cuda::copy_stream(device) : cuda::stream(device);
}
}  // namespace

std::shared_ptr<void> record_stream_event_cuda(int device, StreamKind kind) {
  cudaStream_t stream = stream_of(device, kind);
  cudaEvent_t event = nullptr;
  // Blocking sync: a host thread waiting on the event sleeps instead of spinning on a core (the
  // loader's waits can last a whole training step).
  CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming | cudaEventBlockingSync));
  std::shared_ptr<void> owned(event, [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
  CUDA_CHECK(cudaEventRecord(event, stream));
  return owned;
}

void wait_stream_event_cuda(const std::shared_ptr<void>& event, int device) {
  cuda::stream(device);  // makes the device current
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event.get())));
}

void stream_wait_event_cuda(const std::shared_ptr<void>& event, int device, StreamKind kind) {
  CUDA_CHECK(cudaStreamWaitEvent(stream_of(device, kind), static_cast<cudaEvent_t>(event.get()), 0));
}

void copy_to_device_on_copy_stream_cuda(void* dst, const void* pinned_src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, pinned_src, nbytes, cudaMemcpyHostToDevice, cuda::copy_stream(device)));
}

}  // namespace engine
