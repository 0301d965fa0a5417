// sgd_step_scalars.h - the scalars of one SGD step rounded to the element type, shared by the CPU
// reference and the CUDA kernel so both round them the same way (see sgd_step.h).
#pragma once

#include "ops/sgd_step.h"

namespace engine {

template <typename T>
struct SgdScalars {
  // Rounded to T once, as PyTorch converts each Python float alpha to the element type.
  T weight_decay, momentum, grad_weight;
  bool decay, use_momentum, nesterov, first_step;

  SgdScalars(const SgdStepOptions& opt, bool first)
      : weight_decay(static_cast<T>(opt.weight_decay)),
        momentum(static_cast<T>(opt.momentum)),
        grad_weight(static_cast<T>(1.0 - opt.dampening)),
        decay(opt.weight_decay != 0.0),
        use_momentum(opt.momentum != 0.0),
        nesterov(opt.nesterov),
        first_step(first) {}
};

// The alpha of the last update, param = fma(g, -lr, param): -lr rounded to T once, from the learning
// rate the step reads in memory (sgd_step.h), on the host and in the kernel alike.
template <typename T>
ENGINE_HD inline T sgd_minus_lr(double lr) {
  return static_cast<T>(-lr);
}

}  // namespace engine
