// elementwise_unary_cuda.cu - relu, exp, log, add_scalar, mul_scalar forward and backward, one
// grid-stride kernel per op and direction. exp/log use the accurate (non-intrinsic) functions.
#include "engine/cuda_common.cuh"
#include "ops/elementwise_unary.h"

namespace engine {

namespace {

template <UnaryOp Op, typename T>
__global__ void unary_forward_kernel(T* out, const T* x, T scalar, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    const T v = x[i];
    if constexpr (Op == UnaryOp::Relu) out[i] = v <= T(0) ? T(0) : v;  // NaN stays NaN, as PyTorch
    if constexpr (Op == UnaryOp::Exp) out[i] = ::exp(v);
    if constexpr (Op == UnaryOp::Log) out[i] = ::log(v);
    if constexpr (Op == UnaryOp::AddScalar) out[i] = v + scalar;
    if constexpr (Op == UnaryOp::MulScalar) out[i] = v * scalar;
  }
}

template <UnaryOp Op, typename T>
__global__ void unary_backward_kernel(T* dx, const T* dout, const T* x, const T* out, T scalar, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) {
    if constexpr (Op == UnaryOp::Relu) dx[i] = out[i] > T(0) ? dout[i] : T(0);
    if constexpr (Op == UnaryOp::Exp) dx[i] = dout[i] * out[i];
    if constexpr (Op == UnaryOp::Log) dx[i] = dout[i] / x[i];
    if constexpr (Op == UnaryOp::AddScalar) dx[i] = dout[i];
    if constexpr (Op == UnaryOp::MulScalar) dx[i] = dout[i] * scalar;
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
void unary_forward_cuda(int device, UnaryOp op, T* out, const T* x, T scalar, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_unary(op, [&]<UnaryOp Op>() {
    cuda::launch("unary_forward_kernel", unary_forward_kernel<Op, T>, cuda::elementwise_grid(n, cuda::kBlock),
        cuda::kBlock, 0, stream, out, x, scalar, n);
  });
}

template <typename T>
void unary_backward_cuda(int device, UnaryOp op, T* dx, const T* dout, const T* x, const T* out, T scalar,
                         int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = cuda::stream(device);
  dispatch_unary(op, [&]<UnaryOp Op>() {
    cuda::launch("unary_backward_kernel", unary_backward_kernel<Op, T>, cuda::elementwise_grid(n, cuda::kBlock),
        cuda::kBlock, 0, stream, dx, dout, x, out, scalar, n);
  });
}

template void unary_forward_cuda<float>(int, UnaryOp, float*, const float*, float, int64_t);
template void unary_forward_cuda<double>(int, UnaryOp, double*, const double*, double, int64_t);
template void unary_backward_cuda<float>(int, UnaryOp, float*, const float*, const float*, const float*, float,
                                         int64_t);
template void unary_backward_cuda<double>(int, UnaryOp, double*, const double*, const double*, const double*,
                                          double, int64_t);

}  // namespace engine
