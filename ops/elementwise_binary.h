// elementwise_binary.h - add, sub, mul, div of two tensors, broadcasting over leading dims.
//
// Shapes. Equal shapes, or one operand's shape (without its leading 1s) is a suffix of the other's:
// b of shape (C) against a of shape (N, C) is used for every n. The output has the larger shape.
// Flat contract (contiguous operands): out has n elements, a has na and b has nb, each dividing n,
//     out[i] = a[i % na] (op) b[i % nb]
//
// Backward, for dout of the output's shape, where reduce_to(g, x) sums g over the leading dims
// that x was broadcast along (a no-op when x had the output's shape):
//     add: da = reduce_to(dout, a)              db = reduce_to(dout, b)
//     sub: da = reduce_to(dout, a)              db = reduce_to(-dout, b)
//     mul: da = reduce_to(dout * b, a)          db = reduce_to(dout * a, b)          saves a, b
//     div: da = reduce_to(dout / b, a)          db = reduce_to(-dout * a / b^2, b)   saves a, b
// Gradients are new tensors (overwritten, never accumulated into).
//
// Types: f32, f64, and bf16 as a storage type: each element is computed in float and rounded once
// to bf16 (elementwise_unary.h), so a bf16 result is the f32 result of the same inputs, rounded.
// A broadcast operand's bf16 gradient is summed in f32 and rounded once (reduce_to).
//
// Layout. The flat contract walks storage, so the output takes the operands' memory format:
//   - equal shapes, both dense in one format (x.is_contiguous(format), NCHW or NHWC): run as they
//     are, out in that format (a channels-last network is never re-laid out at a residual add);
//   - equal shapes, different layouts: b is copied into a's format (one copy; into b's format when
//     a is not dense, and row-major when neither is), out in that format;
//   - broadcasting: the flat contract is row-major, so both operands are made contiguous (NCHW)
//     and out is row-major.
// add_ follows the same rules and writes a in place without a copy when a and b share a dense
// format (or, broadcasting, when a is row-major); otherwise it computes aside and copies back.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// ---- raw level: contiguous pointers, T = float, double or bf16 ----
template <typename T>
void binary_forward_cpu(BinaryOp op, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n);
template <typename T>
void binary_forward_cuda(int device, BinaryOp op, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n);

// ---- Tensor level: checks, dispatch, autograd ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }

// In place, a = a (op) b with b broadcast over a; not recorded (optimizer steps, accumulators).
Tensor& add_(Tensor& a, const Tensor& b);

// Sums g over the leading dims so it takes `shape` (the gradient of a broadcast operand); bf16 is
// summed in f32.
Tensor reduce_to(const Tensor& g, const Shape& shape);

}  // namespace engine
