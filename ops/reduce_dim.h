// reduce_dim.h - sum and mean over one dim.
//
// Contract. The input, contiguous, is viewed as (O, D, I): O the product of the dims before the
// reduced one, D its size, I the product of the dims after it. The output is (O, I):
//     sum:  out[o, i] = sum_d x[o, d, i]
//     mean: out[o, i] = (1 / D) sum_d x[o, d, i]        (D = 0 gives NaN, as 0/0)
// Backward broadcasts dout back over d (overwriting dx):
//     sum:  dx[o, d, i] = dout[o, i]
//     mean: dx[o, d, i] = dout[o, i] / D
// The CPU reference accumulates in double; the CUDA kernels in the element type (tolerance in the
// conformance cases).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

enum class ReduceOp : uint8_t { Sum, Mean };

// ---- raw level ----
template <typename T>
void reduce_dim_forward_cpu(ReduceOp op, T* out, const T* x, int64_t O, int64_t D, int64_t I);
template <typename T>
void reduce_dim_backward_cpu(ReduceOp op, T* dx, const T* dout, int64_t O, int64_t D, int64_t I);
template <typename T>
void reduce_dim_forward_cuda(int device, ReduceOp op, T* out, const T* x, int64_t O, int64_t D, int64_t I);
template <typename T>
void reduce_dim_backward_cuda(int device, ReduceOp op, T* dx, const T* dout, int64_t O, int64_t D, int64_t I);

// ---- Tensor level ----
// Reduces `dim` (negative counts from the end); keepdim leaves it in the shape with size 1.
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
// Over all elements: a 0-dim tensor.
Tensor sum(const Tensor& x);
Tensor mean(const Tensor& x);

}  // namespace engine
