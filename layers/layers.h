// layers.h - the basic layers, each a thin Module over one op, named and initialised as PyTorch's.
#pragma once

#include <memory>
#include <vector>

#include "engine/random.h"
#include "layers/module.h"
#include "ops/batchnorm2d.h"
#include "ops/conv2d.h"

namespace engine::nn {

// weight (out, in/groups, k, k), no bias unless asked. Initialised as torchvision's ResNet does:
// Kaiming normal, fan_out, gain sqrt(2): std = sqrt(2 / (out k k)).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding, Generator& gen,
         bool bias = false, int64_t dilation = 1, int64_t groups = 1);
  const char* type_name() const override { return "Conv2d"; }
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  Conv2dOptions options;
};

// weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0 (an i64 scalar kept on
// the host). Training normalises with the batch statistics and updates the running ones;
// eval normalises with the running ones. With ghost_groups G > 1, training normalises each of G
// consecutive groups of the batch with its own statistics (one device standing in for G GPUs
// without synchronised BatchNorm; see ops/batchnorm2d.h), and the running statistics follow
// `ghost_running_stats`.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  const char* type_name() const override { return "BatchNorm2d"; }
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) and relu(forward(x) + residual), each one fused op (ops/batchnorm2d.h): what
  // the ResNet blocks run. They bypass the output hook; see ResNet's blocks for when they are used.
  Tensor forward_relu(const Tensor& x);
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
  int64_t ghost_groups = 1;
  GhostRunningStats ghost_running_stats = GhostRunningStats::FirstGroup;

 private:
  BatchNormOptions options() const;
  void count_batch();  // num_batches_tracked += 1, in a training forward
};

// Sets the ghost groups of every BatchNorm2d in the tree (see BatchNorm2d).
void set_ghost_batchnorm(Module& root, int64_t groups, GhostRunningStats running_stats);

// weight (out, in), bias (out); PyTorch's default initialisation: both uniform in
// [-1/sqrt(in), 1/sqrt(in)] (kaiming_uniform with a = sqrt(5) for the weight).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  const char* type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

class ReLU : public Module {
 public:
  const char* type_name() const override { return "ReLU"; }
  Tensor forward(const Tensor& x) override;
};

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding) : kernel(kernel), stride(stride), padding(padding) {}
  const char* type_name() const override { return "MaxPool2d"; }
  Tensor forward(const Tensor& x) override;
  int64_t kernel, stride, padding;
};

// AdaptiveAvgPool2d((1, 1)): (N, C, H, W) -> (N, C, 1, 1), as torchvision's ResNet.avgpool.
class GlobalAvgPool2d : public Module {
 public:
  const char* type_name() const override { return "AdaptiveAvgPool2d"; }
  Tensor forward(const Tensor& x) override;
};

// Children named "0", "1", ... run in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  const char* type_name() const override { return "Sequential"; }
  Tensor forward(const Tensor& x) override;
  void append(std::shared_ptr<Module> module);
  size_t size() const { return children().size(); }
};

}  // namespace engine::nn
