// elementwise_binary_cpu.cpp - reference loops for add, sub, mul, div.
//
// The larger operand has the output's n elements and the smaller repeats every `inner` elements,
// so the loop runs over (n / inner) repeats of `inner` elements: the flat contract
// out[i] = a[i % na] (op) b[i % nb] without a division per element. Large tensors are split over
// OpenMP threads in pieces of `inner` elements or less (each element is computed alone, so the
// split changes nothing in the result). Elements are loaded to their compute type (float for
// bf16; for f32 and f64 the conversion is the identity) and the result converted once.
#include <algorithm>

#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"

namespace engine {

namespace {

// Below this many elements a parallel region costs more than the loop.
constexpr int64_t kParallelElements = int64_t{1} << 15;

template <BinaryOp Op, typename T>
void apply(T* o, const T* x, const T* y, int64_t count) {
  using C = ElementwiseCompute<T>;
  for (int64_t j = 0; j < count; ++j) {
    const C u = convert_element<C>(x[j]), v = convert_element<C>(y[j]);
    C r{};
    if constexpr (Op == BinaryOp::Add) r = u + v;
    if constexpr (Op == BinaryOp::Sub) r = u - v;
    if constexpr (Op == BinaryOp::Mul) r = u * v;
    if constexpr (Op == BinaryOp::Div) r = u / v;
    o[j] = convert_element<T>(r);
  }
}

template <BinaryOp Op, typename T>
void binary_loop(T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  const int64_t inner = std::min(na, nb);
  if (inner == 0) return;
  // Pieces of at most kParallelElements / 4 elements that never straddle a repeat.
  const int64_t piece = std::min(inner, std::max<int64_t>(kParallelElements / 4, 1));
  const int64_t pieces_per_repeat = (inner + piece - 1) / piece, pieces = n / inner * pieces_per_repeat;
#pragma omp parallel for schedule(static) if (n >= kParallelElements)
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t start = i / pieces_per_repeat * inner, j0 = i % pieces_per_repeat * piece;
    const T* x = na == n ? a + start : a;
    const T* y = nb == n ? b + start : b;
    apply<Op>(out + start + j0, x + j0, y + j0, std::min(piece, inner - j0));
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
template void binary_forward_cpu<bf16>(BinaryOp, bf16*, const bf16*, int64_t, const bf16*, int64_t, int64_t);

}  // namespace engine
