// lars_step_scalars.h - the per-segment and per-element arithmetic of one LARS step, shared by the
// CPU reference and the CUDA kernels so both round every value the same way (see lars_step.h).
#pragma once

#include "engine/rounding.h"
#include "ops/lars_step.h"

namespace engine {

// lr * trust for one segment from its sums of squares (in double, each operation rounded once):
// trust = eta * ||w|| / ||g|| when both norms are positive, else 1; an excluded segment takes lr.
ENGINE_HD inline double lars_scaled_lr(double sum_w2, double sum_g2, bool adapted, double lr, double eta) {
  if (!adapted) return lr;
  const double w_norm = sqrt_rn(sum_w2), g_norm = sqrt_rn(sum_g2);
  if (!(w_norm > 0.0 && g_norm > 0.0)) return lr;
  return mul_rn(lr, div_rn(mul_rn(eta, w_norm), g_norm));
}

// The element-type scalars of a step: rounded to T once, as lars_step.h says.
template <typename T>
struct LarsScalars {
  T weight_decay, momentum;
  explicit LarsScalars(const LarsStepOptions& opt)
      : weight_decay(static_cast<T>(opt.weight_decay)), momentum(static_cast<T>(opt.momentum)) {}
};

// The gradient with weight decay, g = grad + wd * w in one rounding (adapted segments only).
template <typename T>
ENGINE_HD inline T lars_decayed_grad(T w, T grad, T weight_decay) {
  return fma_rn(w, weight_decay, grad);
}

// v = mu * v + scaled_lr * g (the product mu * v rounded on its own, the rest fused); returns v.
template <typename T>
ENGINE_HD inline T lars_momentum(T v, T g, T scaled_lr, T momentum) {
  return fma_rn(g, scaled_lr, mul_rn(v, momentum));
}

}  // namespace engine
