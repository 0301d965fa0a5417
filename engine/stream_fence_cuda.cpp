// stream_fence_cuda.cpp - StreamFence's CUDA events (see stream_fence.h).
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "engine/stream_fence.h"

namespace engine {

std::shared_ptr<void> record_stream_event_cuda(int device) {
  cudaStream_t stream = cuda::stream(device);
  cudaEvent_t event = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  std::shared_ptr<void> owned(event, [](void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
  CUDA_CHECK(cudaEventRecord(event, stream));
  return owned;
}

void wait_stream_event_cuda(const std::shared_ptr<void>& event, int device) {
  cuda::stream(device);  // makes the device current
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event.get())));
}

}  // namespace engine
