// cuda_graph.cpp - the host effects of a capture (cuda_graph.h); the CUDA calls are in
// cuda_graph_cuda.cpp.
#include "engine/cuda_graph.h"

namespace engine {

namespace detail {
// The effects list of the graph this thread is capturing, or nullptr.
thread_local std::vector<std::function<void()>>* t_capture_effects = nullptr;
}  // namespace detail

void repeat_on_replay(std::function<void()> effect) {
  if (detail::t_capture_effects) detail::t_capture_effects->push_back(std::move(effect));
}

bool capturing_graph() { return detail::t_capture_effects != nullptr; }

#if !ENGINE_WITH_CUDA
CudaGraph::CudaGraph(Device device) : device_(device) {
  require_cuda_device(device, "a CUDA graph");  // throws: no CUDA backend
}
CudaGraph::~CudaGraph() = default;
void CudaGraph::capture(const std::function<void()>&) {}
void CudaGraph::replay(bool) {}
#endif

}  // namespace engine
