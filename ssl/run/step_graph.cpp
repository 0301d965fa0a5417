// step_graph.cpp - see step_graph.h.
#include "ssl/run/step_graph.h"

#include "engine/check.h"

namespace engine::ssl {

CudaGraphs parse_cuda_graphs(const std::string& text) {
  if (text == "auto") return CudaGraphs::Auto;
  if (text == "on") return CudaGraphs::On;
  if (text == "off") return CudaGraphs::Off;
  ENGINE_THROW("--cuda-graphs must be auto, on or off, found '{}'", text);
}

const char* cuda_graphs_name(CudaGraphs mode) {
  switch (mode) {
    case CudaGraphs::Auto: return "auto";
    case CudaGraphs::On: return "on";
    case CudaGraphs::Off: return "off";
  }
  return "?";
}

std::string why_step_cannot_be_captured(Device device, int64_t world_size, bool host_indexed_hard_negatives) {
  if (!device.is_cuda()) return "CUDA graphs need a GPU (--device cuda)";
  if (world_size > 1) return "the step of many processes is not captured (its all-reduce and gathers run outside)";
  if (host_indexed_hard_negatives)
    return "the published code's hard negatives (--reference-quirks with --num-nonsem > 0) are picked by index lists "
           "made on the host every step";
  return "";
}

bool use_cuda_graphs(CudaGraphs mode, const std::string& reason, const char* command) {
  if (mode == CudaGraphs::Off) return false;
  ENGINE_CHECK(mode != CudaGraphs::On || reason.empty(),
               "{}: --cuda-graphs on cannot be honoured: {}; use --cuda-graphs auto (graphs where they work) or off",
               command, reason);
  return reason.empty();
}

StepGraph::StepGraph(Device device, bool enabled, int64_t warmup_steps)
    : device_(device), enabled_(enabled), warmup_steps_(warmup_steps) {
  ENGINE_CHECK(!enabled || device.is_cuda(), "StepGraph: CUDA graphs need a CUDA device, found {}", device.str());
  ENGINE_CHECK(warmup_steps >= 1, "StepGraph: at least one eager step must come before the capture, found {}",
               warmup_steps);
}

bool StepGraph::matches_capture(const std::vector<Tensor>& inputs) const {
  if (inputs.size() != static_inputs_.size()) return false;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].shape() != static_inputs_[i].shape() || inputs[i].dtype() != static_inputs_[i].dtype() ||
        inputs[i].device() != static_inputs_[i].device())
      return false;
  return true;
}

std::vector<Tensor> StepGraph::run(const std::vector<Tensor>& inputs, const Body& body, bool eager) {
  if (!enabled_ || eager || eager_steps_ < warmup_steps_) {
    ++eager_steps_;
    return body(inputs);
  }
  if (captured()) {
    if (!matches_capture(inputs)) return body(inputs);
    for (size_t i = 0; i < inputs.size(); ++i) static_inputs_[i].copy_(inputs[i]);
    graph_->replay();
    ++replays_;
    return static_outputs_;
  }
  // The capture: the static inputs are ordinary tensors made before it (outside the graph's pool),
  // written by the copies above before every replay. A capture that fails (a call that waits for
  // the device inside the step) throws: its host side has run, so the step cannot be retried
  // eagerly without counting it twice; --cuda-graphs off is the way round.
  static_inputs_.clear();
  for (const Tensor& input : inputs) static_inputs_.push_back(input.clone());
  graph_ = std::make_unique<CudaGraph>(device_);
  try {
    graph_->capture([&] { static_outputs_ = body(static_inputs_); });
  } catch (const Error& e) {
    graph_.reset();
    ENGINE_THROW("capturing the training step as a CUDA graph (--cuda-graphs) failed: {}. Something in the step "
                 "waits for the device or copies from host memory; run with --cuda-graphs off, and report it",
                 e.what());
  }
  graph_->replay(/*repeat_host_effects=*/false);  // the capture ran this step's host side
  ++replays_;
  return static_outputs_;
}

}  // namespace engine::ssl
