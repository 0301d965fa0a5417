// optimizer.h - SGD with momentum and weight decay over a model's flat parameter buffer.
//
// One sgd_step launch updates every parameter (ops/sgd_step.h has PyTorch's exact rule:
// g = grad + wd * p; buf = g on the first step, else momentum * buf + g; p -= lr * buf). Weight
// decay applies to every parameter, BatchNorm's and biases included, as the reference (METHOD.md O14).
// The momentum buffer is one flat tensor laid out as the parameters; state_dict() names its views
// after the parameters ("momentum_buffer.layer1.0.conv1.weight"), so a checkpoint reads like
// PyTorch's optimizer state and survives a change of the flat layout's padding.
#pragma once

#include <cstdint>

#include "engine/serialize.h"
#include "layers/module.h"

namespace engine::nn {

struct SgdConfig {
  double momentum = 0.9;
  double weight_decay = 1e-4;
};

class Sgd {
 public:
  // `model` must be flat (flatten_parameters()) and on its final device; it must outlive this.
  Sgd(Module& model, SgdConfig config);

  // One step with learning rate `lr` from the gradients in the model's flat gradient buffer.
  void step(double lr);
  int64_t steps() const { return steps_; }
  const SgdConfig& config() const { return config_; }
  const Tensor& momentum_buffer() const { return momentum_; }

  // "momentum_buffer.<parameter name>" for every parameter: views of the flat buffer.
  NamedTensors state_dict() const;
  // Restores the buffers written by state_dict() and the step count; strict: every parameter's
  // buffer must be there with its shape, and nothing else.
  void load_state_dict(const NamedTensors& state, int64_t steps);

 private:
  Module& model_;
  SgdConfig config_;
  Tensor momentum_;  // flat, as model_.flat_parameters()
  int64_t steps_ = 0;
};

}  // namespace engine::nn
