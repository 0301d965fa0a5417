// optimizer.h - the optimizers over a model's flat parameter buffer: the Optimizer interface,
// SGD with momentum (MoCo's) and SimCLR's LARS.
//
// Both keep one flat momentum buffer laid out as the parameters, and update the whole model with
// one op call per step (sgd_step, lars_step) from the model's flat gradient buffer. state_dict()
// names the buffer's views after the parameters ("momentum_buffer.layer1.0.conv1.weight") for
// both, so a checkpoint reads like PyTorch's optimizer state, stores either optimizer the same
// way, and survives a change of the flat layout's padding.
//
// Sgd: PyTorch's exact rule (ops/sgd_step.h: g = grad + wd * p; buf = g on the first step, else
// momentum * buf + g; p -= lr * buf). Weight decay applies to every parameter, BatchNorm's and
// biases included, as the reference (METHOD.md O14).
//
// Lars: SimCLR's LARS (ops/lars_step.h: per tensor, g = grad + wd * w, trust = eta ||w|| / ||g||,
// v = momentum * v + lr * trust * g, w -= v). Every parameter with one dimension (or none) is
// excluded from both weight decay and the trust ratio and takes a plain momentum-SGD step: in a
// ResNet with a projection head these are exactly the BatchNorm weights and biases and the
// Linear biases, which is what SimCLR excludes by name ('batch_normalization' and 'bias').
// Convolution and Linear weights are adapted.
//
// The learning rate lives in device memory. Each optimizer holds a one-element f64 tensor on the
// parameters' device that its op reads when the kernel runs (ops/sgd_step.h, ops/lars_step.h), so a
// training step captured once as a CUDA graph and replayed follows the schedule. A step is then two
// parts: set_lr(lr), the part that stays OUTSIDE a captured graph (a host check of the value, then
// one fill kernel that carries the value as its argument, launched afresh before each replay; not
// a copy from host memory, which would make the host and the stream wait on each other), and
// step(), the part that may be captured (kernels only, reading the lr tensor). step(lr) does both,
// for loops that capture nothing.
// What step() keeps on the host: the step count, advanced again at each replay of a captured step
// (engine/cuda_graph.h's repeat_on_replay: the graph must not outlive the optimizer), and Sgd's
// first-step flag, baked into a capture: Sgd refuses to capture its first step.
#pragma once

#include <cstdint>

#include "engine/serialize.h"
#include "layers/module.h"
#include "ops/lars_step.h"

namespace engine::nn {

// What a training loop holds: one step from the model's flat gradient buffer, and the state a
// checkpoint stores.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Checks lr (finite, >= 0) on the host and writes it into lr_tensor() with a device fill: the part
  // of a step outside a captured CUDA graph (see the top of this file).
  void set_lr(double lr);
  // One step from the model's flat gradient buffer with the learning rate last given to set_lr
  // (refused before the first set_lr): the part of a step a CUDA graph may capture.
  virtual void step() = 0;
  // set_lr(lr), then step().
  void step(double lr);
  virtual int64_t steps() const = 0;
  virtual NamedTensors state_dict() const = 0;  // "momentum_buffer.<parameter name>" views
  virtual void load_state_dict(const NamedTensors& state, int64_t steps) = 0;
  // The learning rate the steps read: one f64 on the parameters' device.
  const Tensor& lr_tensor() const { return lr_; }

 protected:
  // `model` must be flat (flatten_parameters()) and on its final device; `who` names the optimizer
  // in errors.
  Optimizer(const Module& model, const char* who);
  // lr_tensor() for a step of `who`, refused while set_lr has never been called.
  const Tensor& lr_for_step(const char* who) const;

 private:
  Tensor lr_;
  bool lr_set_ = false;
};

struct SgdConfig {
  double momentum = 0.9;
  double weight_decay = 1e-4;
};

class Sgd : public Optimizer {
 public:
  // `model` must be flat (flatten_parameters()) and on its final device; it must outlive this.
  Sgd(Module& model, SgdConfig config);

  // One step from the gradients in the model's flat gradient buffer (Optimizer::step).
  using Optimizer::step;
  void step() override;
  int64_t steps() const override { return steps_; }
  const SgdConfig& config() const { return config_; }
  const Tensor& momentum_buffer() const { return momentum_; }

  // "momentum_buffer.<parameter name>" for every parameter: views of the flat buffer.
  NamedTensors state_dict() const override;
  // Restores the buffers written by state_dict() and the step count; strict: every parameter's
  // buffer must be there with its shape, and nothing else.
  void load_state_dict(const NamedTensors& state, int64_t steps) override;

 private:
  Module& model_;
  SgdConfig config_;
  Tensor momentum_;  // flat, as model_.flat_parameters()
  int64_t steps_ = 0;
};

// SimCLR's defaults: momentum 0.9, weight decay 1e-6, trust coefficient 0.001.
struct LarsConfig {
  double momentum = 0.9;
  double weight_decay = 1e-6;
  double eta = 0.001;
};

class Lars : public Optimizer {
 public:
  // `model` must be flat (flatten_parameters()) and on its final device; it must outlive this.
  // One segment per named parameter, excluded when the parameter has one dimension or none.
  Lars(Module& model, LarsConfig config);

  using Optimizer::step;
  void step() override;
  int64_t steps() const override { return steps_; }
  const LarsConfig& config() const { return config_; }
  const Tensor& momentum_buffer() const { return momentum_; }
  // The segments (in named_parameters() order) and their chunks, made once with the optimizer.
  const LarsPlan& plan() const { return plan_; }

  // As Sgd's: "momentum_buffer.<parameter name>" views of the flat momentum buffer.
  NamedTensors state_dict() const override;
  // As Sgd's, strict.
  void load_state_dict(const NamedTensors& state, int64_t steps) override;

 private:
  Module& model_;
  LarsConfig config_;
  LarsPlan plan_;
  Tensor momentum_;  // flat, as model_.flat_parameters(); zeros before the first step
  int64_t steps_ = 0;
};

}  // namespace engine::nn
