// stream_fence.h - a point in a device's engine stream that host code can wait for.
//
// The data loader copies a batch from a pinned host buffer to the GPU asynchronously and must not
// overwrite that buffer until the copy has run: it records a fence after the copy and waits on it
// before reusing the buffer, instead of synchronising the whole stream. On the CPU a fence is
// always already reached.
#pragma once

#include <memory>

#include "engine/device.h"

namespace engine {

class StreamFence {
 public:
  StreamFence() = default;  // reached
  // Marks the current end of `device`'s engine stream.
  static StreamFence record(Device device);
  // Blocks until the stream has run everything enqueued before record().
  void wait() const;

 private:
  std::shared_ptr<void> event_;  // a cudaEvent_t, destroyed with the last copy of the fence
  int device_ = 0;
};

#if ENGINE_WITH_CUDA
std::shared_ptr<void> record_stream_event_cuda(int device);
void wait_stream_event_cuda(const std::shared_ptr<void>& event, int device);
#endif

}  // namespace engine
