// elementwise_binary_cuda.cu - add, sub, mul, div: one grid-stride kernel per op, with the
// modulo of broadcasting compiled out when both operands have the output's size. Elements are
// loaded to their compute type (float for bf16) and the result converted once, as on the CPU.
#include "engine/cuda_common.cuh"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"

namespace engine {

namespace {

template <BinaryOp Op, typename T>
__device__ inline T apply(T x, T y) {
  using C = ElementwiseCompute<T>;
  const C u = convert_element<C>(x), v = convert_element<C>(y);
  if constexpr (Op == BinaryOp::Add) return convert_element<T>(u + v);
  if constexpr (Op == BinaryOp::Sub) return convert_element<T>(u - v);
  if constexpr (Op == BinaryOp::Mul) return convert_element<T>(u * v);
  if constexpr (Op == BinaryOp::Div) return convert_element<T>(u / v);
}

template <BinaryOp Op, bool Broadcast, typename T>
__global__ void binary_forward_kernel(T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    if constexpr (Broadcast) {
      out[i] = apply<Op>(a[i % na], b[i % nb]);
    } else {
      out[i] = apply<Op>(a[i], b[i]);
    }
  }
}

template <BinaryOp Op, typename T>
void launch(cudaStream_t stream, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  const int grid = cuda::elementwise_grid(n, cuda::kBlock);
  if (na == n && nb == n) {
    cuda::launch("binary_forward_kernel", binary_forward_kernel<Op, false, T>, grid, cuda::kBlock, 0, stream, out, a,
        na, b, nb, n);
  } else {
    cuda::launch("binary_forward_kernel", binary_forward_kernel<Op, true, T>, grid, cuda::kBlock, 0, stream, out, a, na,
        b, nb, n);
  }
}

}  // namespace

template <typename T>
void binary_forward_cuda(int device, BinaryOp op, T* out, const T* a, int64_t na, const T* b, int64_t nb, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  switch (op) {
    case BinaryOp::Add: launch<BinaryOp::Add>(stream, out, a, na, b, nb, n); break;
    case BinaryOp::Sub: launch<BinaryOp::Sub>(stream, out, a, na, b, nb, n); break;
    case BinaryOp::Mul: launch<BinaryOp::Mul>(stream, out, a, na, b, nb, n); break;
    case BinaryOp::Div: launch<BinaryOp::Div>(stream, out, a, na, b, nb, n); break;
  }
}

template void binary_forward_cuda<float>(int, BinaryOp, float*, const float*, int64_t, const float*, int64_t, int64_t);
template void binary_forward_cuda<double>(int, BinaryOp, double*, const double*, int64_t, const double*, int64_t,
                                          int64_t);
template void binary_forward_cuda<bf16>(int, BinaryOp, bf16*, const bf16*, int64_t, const bf16*, int64_t, int64_t);

}  // namespace engine
