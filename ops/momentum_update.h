// momentum_update.h - the key encoder's exponential moving average of the query encoder's
// parameters (MoCo, METHOD.md section 6.4):
//     key[i] = key[i] * m + query[i] * (1 - m)        for every i of a flat buffer, in place
//
// Rounding, as the reference's `param_k.data * m + param_q.data * (1. - m)` in PyTorch: the two
// weights are the element type's roundings of m and of (1 - m) computed in double; each product is
// rounded, then their sum, and nothing is fused (the CPU build uses -ffp-contract=off, the CUDA
// kernel __fmul_rn/__fadd_rn), so CPU and CUDA give the same bits and both equal PyTorch's.
// One consequence of that rounding: with key == query the update is exact in f64 but may move an
// f32 value by one ulp (float(0.999) + float(0.001) is not 1).
//
// The key is a buffer that never receives gradients: no autograd, and the Tensor level refuses a
// key that requires grad while grad mode is on. Types f32 and f64.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level: n contiguous elements; query may equal key (then it is read before written) ----
template <typename T>
void momentum_update_cpu(T* key, const T* query, int64_t n, double m);
template <typename T>
void momentum_update_cuda(int device, T* key, const T* query, int64_t n, double m);

// ---- Tensor level ----
// key and query: same shape, dtype (f32 or f64) and device; key contiguous (it is written in
// place, normally a flat parameter buffer); query is copied first when it is not contiguous or
// overlaps key other than element for element. m in [0, 1].
void momentum_update(Tensor& key, const Tensor& query, double m);

}  // namespace engine
