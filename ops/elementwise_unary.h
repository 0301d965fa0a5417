// elementwise_unary.h - relu, exp, log, and the scalar ops add_scalar and mul_scalar.
//
// Contract (x and out contiguous, n elements, s the scalar where the op has one):
//     relu:       out = max(x, 0)          dx = dout * (out > 0)   saves out
//     exp:        out = e^x                dx = dout * out         saves out
//     log:        out = ln x               dx = dout / x           saves x
//     add_scalar: out = x + s              dx = dout
//     mul_scalar: out = x * s              dx = dout * s
// At x = 0 relu's gradient is taken as 0 (as PyTorch). dx is overwritten, never accumulated.
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

enum class UnaryOp : uint8_t { Relu, Exp, Log, AddScalar, MulScalar };

// ---- raw level: contiguous pointers, T = float or double ----
template <typename T>
void unary_forward_cpu(UnaryOp op, T* out, const T* x, T scalar, int64_t n);
// x and out are the forward's input and output; an op reads only the one it saved.
template <typename T>
void unary_backward_cpu(UnaryOp op, T* dx, const T* dout, const T* x, const T* out, T scalar, int64_t n);
template <typename T>
void unary_forward_cuda(int device, UnaryOp op, T* out, const T* x, T scalar, int64_t n);
template <typename T>
void unary_backward_cuda(int device, UnaryOp op, T* dx, const T* dout, const T* x, const T* out, T scalar,
                         int64_t n);

// ---- Tensor level ----
Tensor relu(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor add_scalar(const Tensor& x, double s);
Tensor mul_scalar(const Tensor& x, double s);
inline Tensor operator*(const Tensor& x, double s) { return mul_scalar(x, s); }
inline Tensor operator*(double s, const Tensor& x) { return mul_scalar(x, s); }
inline Tensor operator+(const Tensor& x, double s) { return add_scalar(x, s); }
inline Tensor operator-(const Tensor& x) { return mul_scalar(x, -1.0); }

}  // namespace engine
