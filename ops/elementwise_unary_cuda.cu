// elementwise_unary_cuda.cu - relu, exp, log, add_scalar, mul_scalar forward and backward, one
// grid-stride kernel per op and direction. exp/log use the accurate (non-intrinsic) functions.
// Each element is loaded to its compute type (float for bf16), computed, and converted once on
// the way out, as the CPU reference does.
#include "engine/cuda_common.cuh"
#include "ops/elementwise_unary.h"

namespace engine {

namespace {

template <UnaryOp Op, typename T>
__global__ void unary_forward_kernel(T* out, const T* x, ElementwiseCompute<T> scalar, int64_t n) {
  using C = ElementwiseCompute<T>;
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    const C v = convert_element<C>(x[i]);
    C r{};
    if constexpr (Op == UnaryOp::Relu) r = v <= C(0) ? C(0) : v;  // NaN stays NaN, as PyTorch
    if constexpr (Op == UnaryOp::Exp) r = ::exp(v);
    if constexpr (Op == UnaryOp::Log) r = ::log(v);
    if constexpr (Op == UnaryOp::AddScalar) r = v + scalar;
    if constexpr (Op == UnaryOp::MulScalar) r = v * scalar;
    out[i] = convert_element<T>(r);
  }
}

template <UnaryOp Op, typename T>
__global__ void unary_backward_kernel(T* dx, const T* dout, const T* x, const T* out, ElementwiseCompute<T> scalar,
                                      int64_t n) {
  using C = ElementwiseCompute<T>;
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    const C g = convert_element<C>(dout[i]);
    C r{};
    if constexpr (Op == UnaryOp::Relu) r = convert_element<C>(out[i]) > C(0) ? g : C(0);
    if constexpr (Op == UnaryOp::Exp) r = g * convert_element<C>(out[i]);
    if constexpr (Op == UnaryOp::Log) r = g / convert_element<C>(x[i]);
    if constexpr (Op == UnaryOp::AddScalar) r = g;
    if constexpr (Op == UnaryOp::MulScalar) r = g * scalar;
    dx[i] = convert_element<T>(r);
  }
}

// Calls fn.template operator()<Op>() for the runtime op.
template <typename Fn>
void dispatch_unary(UnaryOp op, Fn&& fn) {
  switch (op) {
    case UnaryOp::Relu: fn.template operator()<UnaryOp::Relu>(); break;
    case UnaryOp::Exp: fn.template operator()<UnaryOp::Exp>(); break;
    case UnaryOp::Log: fn.template operator()<UnaryOp::Log>(); break;
    case UnaryOp::AddScalar: fn.template operator()<UnaryOp::AddScalar>(); break;
    case UnaryOp::MulScalar: fn.template operator()<UnaryOp::MulScalar>(); break;
  }
}

}  // namespace

template <typename T>
void unary_forward_cuda(int device, UnaryOp op, T* out, const T* x, ElementwiseCompute<T> scalar, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_unary(op, [&]<UnaryOp Op>() {
    cuda::launch("unary_forward_kernel", unary_forward_kernel<Op, T>, cuda::elementwise_grid(n, cuda::kBlock),
        cuda::kBlock, 0, stream, out, x, scalar, n);
  });
}

template <typename T>
void unary_backward_cuda(int device, UnaryOp op, T* dx, const T* dout, const T* x, const T* out,
                         ElementwiseCompute<T> scalar, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_unary(op, [&]<UnaryOp Op>() {
    cuda::launch("unary_backward_kernel", unary_backward_kernel<Op, T>, cuda::elementwise_grid(n, cuda::kBlock),
        cuda::kBlock, 0, stream, dx, dout, x, out, scalar, n);
  });
}

#define ENGINE_INSTANTIATE_UNARY_CUDA(T)                                                                   \
  template void unary_forward_cuda<T>(int, UnaryOp, T*, const T*, ElementwiseCompute<T>, int64_t);         \
  template void unary_backward_cuda<T>(int, UnaryOp, T*, const T*, const T*, const T*, ElementwiseCompute<T>, \
                                       int64_t);
ENGINE_INSTANTIATE_UNARY_CUDA(float)
ENGINE_INSTANTIATE_UNARY_CUDA(double)
ENGINE_INSTANTIATE_UNARY_CUDA(bf16)
#undef ENGINE_INSTANTIATE_UNARY_CUDA

}  // namespace engine
