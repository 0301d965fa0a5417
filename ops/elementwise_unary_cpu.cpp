// elementwise_unary_cpu.cpp - reference loops for relu, exp, log, add_scalar, mul_scalar.
#include <cmath>

#include "ops/elementwise_unary.h"

namespace engine {

template <typename T>
void unary_forward_cpu(UnaryOp op, T* out, const T* x, T scalar, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (op) {
      case UnaryOp::Relu: out[i] = x[i] > T(0) ? x[i] : T(0); break;
      case UnaryOp::Exp: out[i] = std::exp(x[i]); break;
      case UnaryOp::Log: out[i] = std::log(x[i]); break;
      case UnaryOp::AddScalar: out[i] = x[i] + scalar; break;
      case UnaryOp::MulScalar: out[i] = x[i] * scalar; break;
    }
  }
}

template <typename T>
void unary_backward_cpu(UnaryOp op, T* dx, const T* dout, const T* x, const T* out, T scalar, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (op) {
      case UnaryOp::Relu: dx[i] = out[i] > T(0) ? dout[i] : T(0); break;
      case UnaryOp::Exp: dx[i] = dout[i] * out[i]; break;
      case UnaryOp::Log: dx[i] = dout[i] / x[i]; break;
      case UnaryOp::AddScalar: dx[i] = dout[i]; break;
      case UnaryOp::MulScalar: dx[i] = dout[i] * scalar; break;
    }
  }
}

template void unary_forward_cpu<float>(UnaryOp, float*, const float*, float, int64_t);
template void unary_forward_cpu<double>(UnaryOp, double*, const double*, double, int64_t);
template void unary_backward_cpu<float>(UnaryOp, float*, const float*, const float*, const float*, float, int64_t);
template void unary_backward_cpu<double>(UnaryOp, double*, const double*, const double*, const double*, double,
                                         int64_t);

}  // namespace engine
