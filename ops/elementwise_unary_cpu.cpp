// elementwise_unary_cpu.cpp - reference loops for relu, exp, log, add_scalar, mul_scalar; the
// op is chosen once per call, not per element. Large tensors are split over OpenMP threads (each
// element is computed alone, so the split changes nothing in the result).
#include <cmath>

#include "ops/elementwise_unary.h"

namespace engine {

namespace {

// Below this many elements a parallel region costs more than the loop.
constexpr int64_t kParallelElements = int64_t{1} << 15;

template <UnaryOp Op, typename T>
void forward_loop(T* out, const T* x, T s, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (Op == UnaryOp::Relu) out[i] = x[i] <= T(0) ? T(0) : x[i];  // NaN stays NaN, as PyTorch
    if constexpr (Op == UnaryOp::Exp) out[i] = std::exp(x[i]);
    if constexpr (Op == UnaryOp::Log) out[i] = std::log(x[i]);
    if constexpr (Op == UnaryOp::AddScalar) out[i] = x[i] + s;
    if constexpr (Op == UnaryOp::MulScalar) out[i] = x[i] * s;
  }
}

template <UnaryOp Op, typename T>
void backward_loop(T* dx, const T* dout, const T* x, const T* out, T s, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (Op == UnaryOp::Relu) dx[i] = out[i] > T(0) ? dout[i] : T(0);
    if constexpr (Op == UnaryOp::Exp) dx[i] = dout[i] * out[i];
    if constexpr (Op == UnaryOp::Log) dx[i] = dout[i] / x[i];
    if constexpr (Op == UnaryOp::AddScalar) dx[i] = dout[i];
    if constexpr (Op == UnaryOp::MulScalar) dx[i] = dout[i] * s;
  }
}

}  // namespace

template <typename T>
void unary_forward_cpu(UnaryOp op, T* out, const T* x, T scalar, int64_t n) {
  switch (op) {
    case UnaryOp::Relu: forward_loop<UnaryOp::Relu>(out, x, scalar, n); break;
    case UnaryOp::Exp: forward_loop<UnaryOp::Exp>(out, x, scalar, n); break;
    case UnaryOp::Log: forward_loop<UnaryOp::Log>(out, x, scalar, n); break;
    case UnaryOp::AddScalar: forward_loop<UnaryOp::AddScalar>(out, x, scalar, n); break;
    case UnaryOp::MulScalar: forward_loop<UnaryOp::MulScalar>(out, x, scalar, n); break;
  }
}

template <typename T>
void unary_backward_cpu(UnaryOp op, T* dx, const T* dout, const T* x, const T* out, T scalar, int64_t n) {
  switch (op) {
    case UnaryOp::Relu: backward_loop<UnaryOp::Relu>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::Exp: backward_loop<UnaryOp::Exp>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::Log: backward_loop<UnaryOp::Log>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::AddScalar: backward_loop<UnaryOp::AddScalar>(dx, dout, x, out, scalar, n); break;
    case UnaryOp::MulScalar: backward_loop<UnaryOp::MulScalar>(dx, dout, x, out, scalar, n); break;
  }
}

template void unary_forward_cpu<float>(UnaryOp, float*, const float*, float, int64_t);
template void unary_forward_cpu<double>(UnaryOp, double*, const double*, double, int64_t);
template void unary_backward_cpu<float>(UnaryOp, float*, const float*, const float*, const float*, float, int64_t);
template void unary_backward_cpu<double>(UnaryOp, double*, const double*, const double*, const double*, double,
                                         int64_t);

}  // namespace engine
