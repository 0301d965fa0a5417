// sgd_step.cpp - checks and dispatch of the SGD update over flat buffers (no autograd).
#include "ops/sgd_step.h"

namespace engine {

namespace {

void check_options(const SgdStepOptions& opt) {
  ENGINE_CHECK(opt.momentum >= 0.0, "sgd_step: momentum must be >= 0, found {}", opt.momentum);
  ENGINE_CHECK(opt.weight_decay >= 0.0, "sgd_step: weight_decay must be >= 0, found {}", opt.weight_decay);
  ENGINE_CHECK(!opt.nesterov || (opt.momentum > 0.0 && opt.dampening == 0.0),
               "sgd_step: Nesterov momentum needs momentum > 0 and dampening 0, found momentum {} and dampening {}",
               opt.momentum, opt.dampening);
}

// A tensor that sgd_step writes in place: contiguous, and allowed to be written without autograd.
void check_written(const Tensor& t, const char* arg) {
  check_inplace_allowed(t, "sgd_step");
  ENGINE_CHECK(t.is_contiguous(),
               "sgd_step: '{}' is updated in place and must be contiguous, found {} with strides {}; pass the "
               "flat buffers of Module::flatten_parameters() or contiguous tensors",
               arg, t.str(), shape_str(t.strides()));
}

}  // namespace

void check_learning_rate_tensor(const Tensor& lr, const Tensor& params, const Tensor& written_buffer,
                                const char* op) {
  check_defined(lr, op, "lr");
  ENGINE_CHECK(lr.dtype() == DType::f64 && lr.numel() == 1,
               "{}: the learning rate must be a one-element f64 tensor, found {}; make it with "
               "Tensor::full({{1}}, lr, DType::f64, device) (nn::Optimizer keeps one)",
               op, lr.str());
  ENGINE_CHECK(lr.device() == params.device(),
               "{}: the learning rate {} must be on the parameters' device {} (the kernels read it there); "
               "make it on that device",
               op, lr.str(), params.device().str());
  const bool shares = lr.storage() == params.storage() ||
                      (written_buffer.defined() && lr.storage() == written_buffer.storage());
  ENGINE_CHECK(!shares,
               "{}: the learning rate {} shares its memory with a buffer the step writes; give it a tensor of its own",
               op, lr.str());
}

void sgd_step(Tensor& params, const Tensor& grads, Tensor& momentum_buffer, const SgdStepOptions& opt,
              const Tensor& lr, bool first_step) {
  check_defined(params, "sgd_step", "params");
  check_defined(grads, "sgd_step", "grads");
  check_options(opt);
  check_same_shape(params, grads, "sgd_step");
  check_same_dtype(params, grads, "sgd_step");
  check_same_device(params, grads, "sgd_step");
  check_written(params, "params");
  const bool use_buffer = opt.momentum != 0.0;
  if (use_buffer) {
    check_defined(momentum_buffer, "sgd_step", "momentum_buffer");
    check_same_shape(params, momentum_buffer, "sgd_step");
    check_same_dtype(params, momentum_buffer, "sgd_step");
    check_same_device(params, momentum_buffer, "sgd_step");
    check_written(momentum_buffer, "momentum_buffer");
    ENGINE_CHECK(momentum_buffer.storage() != params.storage(),
                 "sgd_step: the momentum buffer {} shares its memory with the parameters {}; give it its own tensor",
                 momentum_buffer.str(), params.str());
  }
  check_learning_rate_tensor(lr, params, use_buffer ? momentum_buffer : Tensor(), "sgd_step");
  // The gradient is only read; a copy keeps it from aliasing what the step writes.
  Tensor g = grads.detach().contiguous();
  if (g.storage() == params.storage() || (use_buffer && g.storage() == momentum_buffer.storage())) g = g.clone();
  dispatch_float(params.dtype(), "sgd_step", [&]<typename T>() {
    T* buffer = use_buffer ? momentum_buffer.data<T>() : nullptr;
    if (params.device().is_cpu()) {
      sgd_step_cpu<T>(params.data<T>(), buffer, g.data<T>(), params.numel(), opt, lr.data<double>(), first_step);
    } else {
      ENGINE_DISPATCH_CUDA(params.device(), "sgd_step",
                           sgd_step_cuda<T>(params.device().index, params.data<T>(), buffer, g.data<T>(),
                                            params.numel(), opt, lr.data<double>(), first_step));
    }
  });
}

}  // namespace engine
