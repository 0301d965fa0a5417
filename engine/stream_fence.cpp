// stream_fence.cpp - see stream_fence.h; the CUDA events are in stream_fence_cuda.cpp.
#include "engine/stream_fence.h"

namespace engine {

StreamFence StreamFence::record(Device device, StreamKind kind) {
  StreamFence fence;
  if (device.is_cpu()) return fence;
  fence.device_ = device.index;
#if !ENGINE_WITH_CUDA
  (void)kind;  // only a CUDA build has streams to choose from
#endif
  ENGINE_DISPATCH_CUDA(device, "StreamFence::record", fence.event_ = record_stream_event_cuda(device.index, kind));
  return fence;
}

void StreamFence::wait() const {
#if ENGINE_WITH_CUDA
  if (event_) wait_stream_event_cuda(event_, device_);
#endif
}

void StreamFence::make_stream_wait(StreamKind kind) const {
#if ENGINE_WITH_CUDA
  if (event_) stream_wait_event_cuda(event_, device_, kind);
#else
  (void)kind;
#endif
}

}  // namespace engine
