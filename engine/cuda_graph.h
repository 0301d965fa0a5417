// cuda_graph.h - CUDA graphs: a stretch of a device's engine-stream work captured once and replayed
// with one launch (cudaGraphLaunch) instead of one launch per kernel.
//
// What a replay does again is exactly the device work of the capture: the same kernels with the
// same arguments on the same addresses. So:
//   - capture executes nothing; call replay() to run the captured work, the first time included;
//   - kernel arguments are baked: a value that changes from one replay to the next (a learning
//     rate, a step counter, a queue pointer) must be read by the kernels from device memory that is
//     rewritten before the replay, outside the graph;
//   - memory: while capturing, the thread's allocations come from a private pool of the device's
//     caching allocator (engine/allocator.h), kept for the graph until it is destroyed, so the
//     tensors made during the capture, and the addresses the graph reads and writes, stay valid;
//   - the host side of the captured code (autograd's bookkeeping, host counters) runs once, at
//     capture. A host counter that each step advances registers its increment with
//     repeat_on_replay(), and replay() repeats it;
//   - nothing inside may wait for the device or read from it (a host read, a synchronisation, a copy
//     from pageable memory): CUDA refuses those during a capture, and CUDA_CHECK says which call.
// The CUDA emulation build records and replays graphs too (engine/cuda_emulation/), so CI tests them.
#pragma once

#include <functional>
#include <vector>

#include "engine/device.h"

namespace engine {

// `effect`, host work that the code being captured has just done (advancing a counter the host
// keeps), is repeated by every replay of the graph this thread is capturing. Outside a capture it
// does nothing: the caller has done the work, once, as it should.
void repeat_on_replay(std::function<void()> effect);
// Whether this thread is capturing a graph now.
bool capturing_graph();

class CudaGraph {
 public:
  explicit CudaGraph(Device device);  // a CUDA device; throws otherwise
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Captures the device work that `body` enqueues on the engine stream (nothing runs). Once only.
  // An exception from `body` or from CUDA ends the capture and leaves the graph empty.
  void capture(const std::function<void()>& body);
  // Runs the captured work on the engine stream, then the host effects registered during capture.
  // The first run after capture() passes false: the capture itself did the host side once.
  void replay(bool repeat_host_effects = true);
  bool captured() const { return exec_ != nullptr; }

 private:
  Device device_;
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
  std::vector<std::function<void()>> effects_;
};

}  // namespace engine
