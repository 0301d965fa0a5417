// elementwise_binary_cpu.cpp - reference loops for add, sub, mul, div.
#include "ops/elementwise_binary.h"

namespace engine {

template <typename T>
void binary_forward_cpu(BinaryOp op, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T x = a[i % na], y = b[i % nb];
    switch (op) {
      case BinaryOp::Add: out[i] = x + y; break;
      case BinaryOp::Sub: out[i] = x - y; break;
      case BinaryOp::Mul: out[i] = x * y; break;
      case BinaryOp::Div: out[i] = x / y; break;
    }
  }
}

template void binary_forward_cpu<float>(BinaryOp, float*, const float*, int64_t, const float*, int64_t, int64_t);
template void binary_forward_cpu<double>(BinaryOp, double*, const double*, int64_t, const double*, int64_t, int64_t);

}  // namespace engine
