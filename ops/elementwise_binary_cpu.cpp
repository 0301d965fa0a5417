// elementwise_binary_cpu.cpp - reference loops for add, sub, mul, div.
//
// The larger operand has the output's n elements and the smaller repeats every `inner` elements,
// so the loop runs over (n / inner) repeats of `inner` elements: the flat contract
// out[i] = a[i % na] (op) b[i % nb] without a division per element.
#include "ops/elementwise_binary.h"

namespace engine {

namespace {

template <BinaryOp Op, typename T>
void binary_loop(T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  const int64_t inner = std::min(na, nb);
  if (inner == 0) return;
  for (int64_t start = 0; start < n; start += inner) {
    const T* x = na == n ? a + start : a;
    const T* y = nb == n ? b + start : b;
    T* o = out + start;
    for (int64_t j = 0; j < inner; ++j) {
      if constexpr (Op == BinaryOp::Add) o[j] = x[j] + y[j];
      if constexpr (Op == BinaryOp::Sub) o[j] = x[j] - y[j];
      if constexpr (Op == BinaryOp::Mul) o[j] = x[j] * y[j];
      if constexpr (Op == BinaryOp::Div) o[j] = x[j] / y[j];
    }
  }
}

}  // namespace

template <typename T>
void binary_forward_cpu(BinaryOp op, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  switch (op) {
    case BinaryOp::Add: binary_loop<BinaryOp::Add>(out, a, na, b, nb, n); break;
    case BinaryOp::Sub: binary_loop<BinaryOp::Sub>(out, a, na, b, nb, n); break;
    case BinaryOp::Mul: binary_loop<BinaryOp::Mul>(out, a, na, b, nb, n); break;
    case BinaryOp::Div: binary_loop<BinaryOp::Div>(out, a, na, b, nb, n); break;
  }
}

template void binary_forward_cpu<float>(BinaryOp, float*, const float*, int64_t, const float*, int64_t, int64_t);
template void binary_forward_cpu<double>(BinaryOp, double*, const double*, int64_t, const double*, int64_t, int64_t);

}  // namespace engine
