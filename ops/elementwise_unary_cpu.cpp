// elementwise_unary_cpu.cpp - reference loops for relu, exp, log, add_scalar, mul_scalar; the
// op is chosen once per call, not per element. Each element is loaded to its compute type (float
// for bf16; for f32 and f64 the conversion is the identity), computed, and converted once on the
// way out. Large tensors are split over OpenMP threads (each element is computed alone, so the
// split changes nothing in the result).
#include <cmath>

#include "ops/elementwise_unary.h"

namespace engine {

namespace {

// Below this many elements a parallel region costs more than the loop.
constexpr int64_t kParallelElements = int64_t{1} << 15;

template <UnaryOp Op, typename T>
void forward_loop(T* out, const T* x, ElementwiseCompute<T> s, int64_t n) {
  using C = ElementwiseCompute<T>;
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    const C v = convert_element<C>(x[i]);
    C r{};
    if constexpr (Op == UnaryOp::Relu) r = v <= C(0) ? C(0) : v;  // NaN stays NaN, as PyTorch
    if constexpr (Op == UnaryOp::Exp) r = std::exp(v);
    if constexpr (Op == UnaryOp::Log) r = std::log(v);
    if constexpr (Op == UnaryOp::AddScalar) r = v + s;
    if constexpr (Op == UnaryOp::MulScalar) r = v * s;
    out[i] = convert_element<T>(r);
  }
}

template <UnaryOp Op, typename T>
void backward_loop(T* dx, const T* dout, const T* x, const T* out, ElementwiseCompute<T> s, int64_t n) {
  using C = ElementwiseCompute<T>;
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    const C g = convert_element<C>(dout[i]);
    C r{};
    if constexpr (Op == UnaryOp::Relu) r = convert_element<C>(out[i]) > C(0) ? g : C(0);
    if constexpr (Op == UnaryOp::Exp) r = g * convert_element<C>(out[i]);
    if constexpr (Op == UnaryOp::Log) r = g / convert_element<C>(x[i]);
    if constexpr (Op == UnaryOp::AddScalar) r = g;
    if constexpr (Op == UnaryOp::MulScalar) r = g * s;
    dx[i] = convert_element<T>(r);
  }
}

}  // namespace

template <typename T>
void unary_forward_cpu(UnaryOp op, T* out, const T* x, ElementwiseCompute<T> scalar, int64_t n) {
  switch (op) {
    case UnaryOp::Relu: forward_loop<UnaryOp::Relu>(out, x, scalar, n); break;
    case UnaryOp::Exp: forward_loop<UnaryOp::Exp>(out, x, scalar, n); break;
    case UnaryOp::Log: forward_loop<UnaryOp::Log>(out, x, scalar, n); break;
    case UnaryOp::AddScalar: forward_loop<UnaryOp::AddScalar>(out, x, scalar, n); break;
    case UnaryOp::MulScalar: forward_loop<UnaryOp::MulScalar>(out, x, scalar, n); break;
  }
}

template <typename T>
void unary_backward_cpu(UnaryOp op, T* dx, const T* dout, const T* x, const T* out, ElementwiseCompute<T> scalar,
                        int64_t n) {
  switch (op) {
    case UnaryOp::Relu: backward_loop<UnaryOp::Relu>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::Exp: backward_loop<UnaryOp::Exp>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::Log: backward_loop<UnaryOp::Log>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::AddScalar: backward_loop<UnaryOp::AddScalar>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::MulScalar: backward_loop<UnaryOp::MulScalar>(dx, dout, x, out, scalar, n); break;
  }
}

#define ENGINE_INSTANTIATE_UNARY_CPU(T)                                                                    \
  template void unary_forward_cpu<T>(UnaryOp, T*, const T*, ElementwiseCompute<T>, int64_t);               \
  template void unary_backward_cpu<T>(UnaryOp, T*, const T*, const T*, const T*, ElementwiseCompute<T>, int64_t);
ENGINE_INSTANTIATE_UNARY_CPU(float)
ENGINE_INSTANTIATE_UNARY_CPU(double)
ENGINE_INSTANTIATE_UNARY_CPU(bf16)
#undef ENGINE_INSTANTIATE_UNARY_CPU

}  // namespace engine
