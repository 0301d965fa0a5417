// cuda_graph_cuda.cpp - CudaGraph (cuda_graph.h) on the CUDA runtime's stream capture. The same code
// runs on the emulated runtime in the emulation build.
#include <cuda_runtime.h>

#include "engine/allocator.h"
#include "engine/check.h"
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "engine/cuda_graph.h"

namespace engine {

namespace detail {
extern thread_local std::vector<std::function<void()>>* t_capture_effects;
}  // namespace detail

CudaGraph::CudaGraph(Device device) : device_(device) { require_cuda_device(device, "a CUDA graph"); }

CudaGraph::~CudaGraph() {
  if (exec_) CUDA_WARN(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_)));
  if (graph_) CUDA_WARN(cudaGraphDestroy(static_cast<cudaGraph_t>(graph_)));
  // The pool's blocks may be reused once the graph's last replay has run.
  if (graph_ || exec_) CUDA_WARN(cudaStreamSynchronize(cuda::stream(device_.index)));
  cuda_allocator(device_.index).release_private_pool(this);
}

void CudaGraph::capture(const std::function<void()>& body) {
  ENGINE_CHECK(!exec_ && !graph_, "CudaGraph::capture: this graph is captured already; make a new one");
  ENGINE_CHECK(!detail::t_capture_effects, "CudaGraph::capture: this thread is capturing another graph; captures do "
               "not nest");
  const cudaStream_t stream = cuda::stream(device_.index);
  CachingAllocator& allocator = cuda_allocator(device_.index);
  // The capture draws every block afresh from its own pool: the blocks the eager steps left cached
  // go back to the device first, or the capture could need twice a step's memory. (Work queued
  // before the capture is not part of it.)
  allocator.empty_cache();
  allocator.begin_private_pool(this);
  const cudaError_t began = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (began != cudaSuccess) allocator.end_private_pool();
  CUDA_CHECK(began);
  detail::t_capture_effects = &effects_;
  auto end_capture = [&](cudaGraph_t* graph) {
    detail::t_capture_effects = nullptr;
    allocator.end_private_pool();
    return cudaStreamEndCapture(stream, graph);
  };
  try {
    body();
  } catch (...) {
    cudaGraph_t abandoned = nullptr;
    end_capture(&abandoned);  // whatever it says, the body's error is the one to report
    cudaGetLastError();
    if (abandoned) cudaGraphDestroy(abandoned);
    effects_.clear();
    throw;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = end_capture(&graph);
  if (ended != cudaSuccess) {
    effects_.clear();
    cudaGetLastError();
    ENGINE_THROW("CUDA graph capture failed: cudaStreamEndCapture returned {} ({}): a call inside the captured "
                 "step was refused (an earlier CUDA error names it), or it waited for the device; the step must "
                 "not read from the device or synchronise",
                 cudaGetErrorName(ended), cudaGetErrorString(ended));
  }
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  exec_ = exec;
}

void CudaGraph::replay(bool repeat_host_effects) {
  ENGINE_CHECK(exec_, "CudaGraph::replay: nothing was captured; call capture() first");
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda::stream(device_.index)));
  if (repeat_host_effects)
    for (const auto& effect : effects_) effect();
}

}  // namespace engine
