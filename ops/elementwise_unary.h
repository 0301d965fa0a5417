// elementwise_unary.h - relu, exp, log, and the scalar ops add_scalar and mul_scalar.
//
// Contract (x and out contiguous, n elements, s the scalar where the op has one):
//     relu:       out = max(x, 0)          dx = dout * (out > 0)   saves out
//     exp:        out = e^x                dx = dout * out         saves out
//     log:        out = ln x               dx = dout / x           saves x
//     add_scalar: out = x + s              dx = dout
//     mul_scalar: out = x * s              dx = dout * s
// At x = 0 relu's gradient is taken as 0 (as PyTorch); relu keeps NaN. dx is overwritten, never
// accumulated.
//
// Types: f32, f64, and bf16 as a storage type: each element is loaded to float, computed in float
// and rounded once to bf16 on the way out, so a bf16 result is the f32 result of the same inputs,
// rounded. The scalar of a bf16 op is a float (rounding it to bf16 would be a second rounding).
//
// Layout. Every element is computed alone, so the op runs over storage in whatever order it lies:
// an x that is dense in NCHW or NHWC (x.is_contiguous(format)) is used as it is and out takes its
// format (a channels-last network is never re-laid out at a ReLU); any other view is made
// contiguous (row-major) first. Backward brings dout to the format of the tensor it saved (no
// copy when it already is) and returns dx in that format; add_scalar and mul_scalar, which save
// nothing, keep dout's dense format.
#pragma once

#include <cstdint>
#include <type_traits>

#include "engine/tensor.h"

namespace engine {

enum class UnaryOp : uint8_t { Relu, Exp, Log, AddScalar, MulScalar };

// The type an element of T is computed in, shared by the elementwise families: T itself, float
// for bf16 (storage only).
template <typename T>
using ElementwiseCompute = std::conditional_t<std::is_same_v<T, bf16>, float, T>;

// ---- raw level: contiguous pointers, T = float, double or bf16 ----
template <typename T>
void unary_forward_cpu(UnaryOp op, T* out, const T* x, ElementwiseCompute<T> scalar, int64_t n);
// x and out are the forward's input and output; an op reads only the one it saved.
template <typename T>
void unary_backward_cpu(UnaryOp op, T* dx, const T* dout, const T* x, const T* out, ElementwiseCompute<T> scalar,
                        int64_t n);
template <typename T>
void unary_forward_cuda(int device, UnaryOp op, T* out, const T* x, ElementwiseCompute<T> scalar, int64_t n);
template <typename T>
void unary_backward_cuda(int device, UnaryOp op, T* dx, const T* dout, const T* x, const T* out,
                         ElementwiseCompute<T> scalar, int64_t n);

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

// Calls fn.template operator()<T>() for the element types the elementwise ops take: f32, f64, bf16.
template <typename Fn>
void dispatch_elementwise(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32: fn.template operator()<float>(); return;
    case DType::f64: fn.template operator()<double>(); return;
    case DType::bf16: fn.template operator()<bf16>(); return;
    default: break;
  }
  ENGINE_THROW("{}: expected a tensor of dtype f32, f64 or bf16, found {}; convert it first with .to(DType::f32)",
               op, dtype_name(dtype));
}

}  // namespace engine
