// cpu_bf16.h - the CPU's bf16 mode: how an op given bf16 activations on the CPU computes.
//
// A CUDA kernel under bf16 reads bf16 values, computes in f32 and rounds each output it writes to
// bf16 once (cuDNN likewise, accumulating in f32). The CPU references are float/double templates,
// so on the CPU an op runs its f32 reference on the bf16 values widened to f32 (exact) and rounds
// its outputs to bf16: the same values rounded at the same points, with f32 sums in another order.
// Written as casts around the f32 op, autograd rounds the gradients where CUDA does too: the bf16
// dy is widened, the f32 backward runs, and dx (and a bf16 weight's dw) are rounded to bf16 by the
// casts' backward. Parameters an op keeps in f32 under bf16 (BatchNorm's) pass through unchanged.
// Slow (every call copies), which is fine: this mode exists so CI trains in bf16 without a GPU.
#pragma once

#include "engine/tensor.h"

namespace engine {

inline bool cpu_bf16(const Tensor& x) { return x.device().is_cpu() && x.dtype() == DType::bf16; }

// t widened to f32 when it is bf16 (recorded, so its gradient comes back rounded to bf16); t
// itself otherwise, undefined included.
inline Tensor widened(const Tensor& t) { return t.defined() && t.dtype() == DType::bf16 ? t.to(DType::f32) : t; }

}  // namespace engine
