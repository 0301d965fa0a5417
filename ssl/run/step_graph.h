// step_graph.h - the training step as a CUDA graph (`--cuda-graphs`, engine/cuda_graph.h): the
// step's forward, backward, optimizer step, momentum update and enqueue, a few hundred kernel
// launches, replayed with one launch.
//
// The first `warmup` steps run eagerly: cuDNN measures its algorithms, the optimizer's first step
// initialises its buffers, every lazily made cache is made. The next step is captured on static
// copies of its inputs and replayed; from then on each step copies its inputs (the batch) into
// those copies and replays. What changes from step to step must be in device memory that the step
// reads (the learning rate: Optimizer::set_lr; the step number for shuffle BN: TrainingBatch's
// step_number, which MoCo's shuffle BN and the masking read; MoCo's queue pointer), written before
// run(). A step whose inputs have another shape than the captured one runs eagerly.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/cuda_graph.h"
#include "engine/tensor.h"

namespace engine::ssl {

// --cuda-graphs: auto (where the step can be captured: see why_step_cannot_be_captured), on
// (refuse to run where it cannot), off.
enum class CudaGraphs { Auto, On, Off };
CudaGraphs parse_cuda_graphs(const std::string& text);
const char* cuda_graphs_name(CudaGraphs mode);

// Why a training step with these settings cannot be captured, or "" when it can: many processes
// all-reduce and gather through MPI's host copies or NCCL calls that this capture does not join;
// the published code's hard negatives (--reference-quirks with hard negatives) pick their images
// with index lists made on the host every step.
std::string why_step_cannot_be_captured(Device device, int64_t world_size, bool host_indexed_hard_negatives);
// Whether to capture: `mode` against the reason above (empty: it can). On refuses with the reason.
bool use_cuda_graphs(CudaGraphs mode, const std::string& reason, const char* command);

class StepGraph {
 public:
  // A step: its outputs from its inputs. It may keep nothing of the inputs' storage.
  using Body = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

  // Disabled, run() calls the body every time.
  StepGraph(Device device, bool enabled, int64_t warmup_steps = 2);

  // One step: the body eagerly (warm-up, disabled, another shape, or `eager`: a step that reads
  // from the device, such as the masked step drawing the epoch's picture), or captured and
  // replayed. The outputs of a replay are the graph's own tensors, overwritten by the next replay:
  // copy what must be kept longer than one step.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs, const Body& body, bool eager = false);

  bool enabled() const { return enabled_; }
  bool captured() const { return graph_ && graph_->captured(); }
  int64_t replays() const { return replays_; }

 private:
  bool matches_capture(const std::vector<Tensor>& inputs) const;

  Device device_;
  bool enabled_;
  int64_t warmup_steps_, eager_steps_ = 0, replays_ = 0;
  std::vector<Tensor> static_inputs_, static_outputs_;
  std::unique_ptr<CudaGraph> graph_;
};

}  // namespace engine::ssl
