// stream_fence.h - a point in one of a device's streams that host code, or the other stream, can
// wait for.
//
// Each GPU has two streams (engine/cuda_context.h): the engine stream, where every op runs, and a
// copy stream, where the data loader copies batches from pinned host buffers to the GPU while the
// engine stream computes. A fence marks the current end of one of them:
//   - wait(): the host blocks (sleeping, not spinning: the events are made with
//     cudaEventBlockingSync) until the stream has run everything enqueued before the fence. The
//     loader waits so before it overwrites a pinned buffer a copy may still be reading.
//   - make_stream_wait(kind): the other stream runs nothing enqueued after this call until the
//     fence is reached; the host does not wait. The engine stream waits so for a batch's copy, and
//     the copy stream for the end of the steps that read the device buffer it is about to refill.
// On the CPU a fence is always already reached.
#pragma once

#include <memory>

#include "engine/device.h"

namespace engine {

enum class StreamKind { Engine, Copy };

class StreamFence {
 public:
  StreamFence() = default;  // reached
  // Marks the current end of `device`'s engine stream, or of its copy stream.
  static StreamFence record(Device device, StreamKind kind = StreamKind::Engine);
  // Blocks until the stream has run everything enqueued before record().
  void wait() const;
  // Makes `device`'s stream `kind` wait on the GPU for this fence; nothing for a reached fence.
  void make_stream_wait(StreamKind kind) const;

 private:
  std::shared_ptr<void> event_;  // a cudaEvent_t, destroyed with the last copy of the fence
  int device_ = 0;
};

#if ENGINE_WITH_CUDA
std::shared_ptr<void> record_stream_event_cuda(int device, StreamKind kind);
void wait_stream_event_cuda(const std::shared_ptr<void>& event, int device);
void stream_wait_event_cuda(const std::shared_ptr<void>& event, int device, StreamKind kind);
// An asynchronous copy of `nbytes` from pinned host memory to the device on its copy stream.
void copy_to_device_on_copy_stream_cuda(void* dst, const void* pinned_src, size_t nbytes, int device);
#endif

}  // namespace engine
