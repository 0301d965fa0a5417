// layers.cpp - the basic layers.
#include "layers/layers.h"

#include <cmath>

#include "engine/cuda_graph.h"
#include "ops/batchnorm2d.h"
#include "ops/elementwise_unary.h"
#include "ops/linear.h"
#include "ops/pooling.h"

namespace engine::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t padding,
               Generator& gen, bool with_bias, int64_t dilation, int64_t groups)
    : options(Conv2dOptions::square(stride, padding, dilation, groups)) {
  ENGINE_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0,
               "Conv2d: {} input and {} output channels must be divisible by groups = {}", in_channels, out_channels,
               groups);
  weight = Tensor::empty({out_channels, in_channels / groups, kernel, kernel});
  normal_(weight, gen, 0.0, std::sqrt(2.0 / static_cast<double>(out_channels * kernel * kernel)));
  register_parameter("weight", &weight);
  if (with_bias) {
    // PyTorch's default conv bias: uniform in +-1/sqrt(fan_in).
    bias = Tensor::empty({out_channels});
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels / groups * kernel * kernel));
    uniform_(bias, gen, -bound, bound);
    register_parameter("bias", &bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  if (x.dtype() != DType::bf16 || weight.dtype() != DType::f32) return conv2d(x, weight, bias, options);
  // Mixed precision (engine/precision.h): the f32 master weight is cast to the activations' dtype
  // and layout for this forward, in one copy; its gradient comes back through the cast in f32.
  const Tensor w = weight.to(DType::bf16, x.memory_format());
  return conv2d(x, w, bias.defined() ? bias.to(DType::bf16) : bias, options);
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum)
    : weight(Tensor::ones({channels})),
      bias(Tensor::zeros({channels})),
      running_mean(Tensor::zeros({channels})),
      running_var(Tensor::ones({channels})),
      num_batches_tracked(Tensor::zeros({}, DType::i64)),
      eps(eps),
      momentum(momentum) {
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
  register_buffer("num_batches_tracked", &num_batches_tracked, /*host=*/true);
}

void BatchNorm2d::count_batch() {
  ++num_batches_tracked.data<int64_t>()[0];
  // A captured training step (engine/cuda_graph.h) counts again at each replay; the lambda holds
  // the counter's storage, so it stays valid as long as the graph.
  repeat_on_replay([counter = num_batches_tracked]() mutable { ++counter.data<int64_t>()[0]; });
}

BatchNormOptions BatchNorm2d::options() const {
  BatchNormOptions opt;
  opt.training = is_training();
  opt.momentum = momentum;
  opt.eps = eps;
  opt.groups = ghost_groups;
  opt.running_stats = ghost_running_stats;
  return opt;
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  const BatchNormOptions opt = options();
  Tensor y = batchnorm2d(x, weight, bias, running_mean, running_var, opt);
  if (opt.training) count_batch();
  return y;
}

Tensor BatchNorm2d::forward_relu(const Tensor& x) {
  const BatchNormOptions opt = options();
  Tensor y = batchnorm2d_relu(x, weight, bias, running_mean, running_var, opt);
  if (opt.training) count_batch();
  return y;
}

Tensor BatchNorm2d::forward_add_relu(const Tensor& x, const Tensor& residual) {
  const BatchNormOptions opt = options();
  Tensor y = batchnorm2d_add_relu(x, residual, weight, bias, running_mean, running_var, opt);
  if (opt.training) count_batch();
  return y;
}

void set_ghost_batchnorm(Module& root, int64_t groups, GhostRunningStats running_stats) {
  ENGINE_CHECK(groups >= 1, "set_ghost_batchnorm: the group count must be at least 1, found {}", groups);
  for (auto& [path, module] : root.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) {
      bn->ghost_groups = groups;
      bn->ghost_running_stats = running_stats;
    }
  }
}

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = Tensor::empty({out_features, in_features});
  uniform_(weight, gen, -bound, bound);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Tensor::empty({out_features});
    uniform_(bias, gen, -bound, bound);
    register_parameter("bias", &bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }

Tensor MaxPool2d::forward(const Tensor& x) { return maxpool2d(x, kernel, stride, padding); }

Tensor GlobalAvgPool2d::forward(const Tensor& x) { return avgpool_global(x).view({x.size(0), x.size(1), 1, 1}); }

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) append(std::move(m));
}

void Sequential::append(std::shared_ptr<Module> module) { register_module(std::to_string(size()), std::move(module)); }

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& [name, module] : children()) y = (*module)(y);
  return y;
}

}  // namespace engine::nn
