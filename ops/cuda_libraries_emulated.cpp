// cuda_libraries_emulated.cpp - the CUDA emulation build's stand-in for cuBLAS and cuDNN. The
// emulation runs our own kernels, not NVIDIA's libraries: matmul (cuBLAS) and the three convolution
// passes (cuDNN) compute the CPU reference's result on the same (host) memory, converting bf16 and
// the NHWC layout on the way, while the conv2d bias still goes through our CUDA kernels exactly as
// after cuDNN. Each stand-in checks its operands as the library would need them (device memory in
// use, large enough) and, after writing, the buffers' guard zones. The complete list is in
// docs/ARCHITECTURE.md ("CUDA emulation").
#include <vector>

#include "engine/cuda_common.cuh"
#include "engine/cuda_emulation/device_memory.h"
#include "ops/conv2d.h"
#include "ops/matmul.h"

namespace engine {

namespace {

namespace emu = cuda::emulation;

// The bytes a row-major rows x cols matrix with leading dimension ld spans.
size_t matrix_bytes(int64_t rows, int64_t cols, int64_t ld, size_t element) {
  return rows > 0 && cols > 0 ? static_cast<size_t>((rows - 1) * ld + cols) * element : 0;
}

}  // namespace

template <typename T>
void matmul_forward_cuda(int, T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, int64_t lda, int64_t ldb, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const char* call = "cublasGemm (CPU stand-in)";
  emu::library_call_begins(call);
  const size_t e = sizeof(T);
  emu::check_library_operand(call, "A", a, trans_a ? matrix_bytes(K, M, lda, e) : matrix_bytes(M, K, lda, e));
  emu::check_library_operand(call, "B", b, trans_b ? matrix_bytes(N, K, ldb, e) : matrix_bytes(K, N, ldb, e));
  emu::check_library_operand(call, "C", c, matrix_bytes(M, N, ldc, e));
  if (!matmul_forward_cpu_blas(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc))
    matmul_forward_cpu(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc);
  emu::check_guard_zones(call);
}
template void matmul_forward_cuda<float>(int, float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                         bool, int64_t, int64_t, int64_t);
template void matmul_forward_cuda<double>(int, double*, const double*, const double*, int64_t, int64_t, int64_t,
                                          bool, bool, int64_t, int64_t, int64_t);

namespace {

// Where element (n, c, y, x) of a C x H x W operand lives in cuDNN's layout: NCHW, or NHWC (the
// weight then KRSC) when channels_last.
int64_t layout_offset(bool channels_last, int64_t c_, int64_t h_, int64_t w_, int64_t n, int64_t c, int64_t y,
                      int64_t x) {
  return channels_last ? ((n * h_ + y) * w_ + x) * c_ + c : ((n * c_ + c) * h_ + y) * w_ + x;
}

// Calls fn(i, o) for element i of the operand in NCHW order, o its offset in the layout.
template <typename Fn>
void for_each_nchw(bool channels_last, int64_t N, int64_t C, int64_t H, int64_t W, Fn&& fn) {
  size_t i = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) fn(i++, layout_offset(channels_last, C, H, W, n, c, y, x));
}

// The operand as contiguous NCHW floats.
std::vector<float> to_nchw(const void* p, DType dtype, bool channels_last, int64_t N, int64_t C, int64_t H, int64_t W) {
  std::vector<float> out(static_cast<size_t>(N * C * H * W));
  for_each_nchw(channels_last, N, C, H, W, [&](size_t i, int64_t o) {
    out[i] = dtype == DType::f32 ? static_cast<const float*>(p)[o]
                                 : convert_element<float>(static_cast<const bf16*>(p)[o]);
  });
  return out;
}

void from_nchw(void* p, DType dtype, bool channels_last, const std::vector<float>& v, int64_t N, int64_t C, int64_t H,
               int64_t W) {
  for_each_nchw(channels_last, N, C, H, W, [&](size_t i, int64_t o) {
    if (dtype == DType::f32)
      static_cast<float*>(p)[o] = v[i];
    else
      static_cast<bf16*>(p)[o] = convert_element<bf16>(v[i]);
  });
}

// The checks cuDNN's call would make of its dtype and operands, the queued copies run first.
struct ConvOperands {
  const char* call;
  size_t element, x, w, y;
  ConvOperands(const char* call_, DType dtype, const Conv2dGeometry& g) : call(call_) {
    ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16,
                 "conv2d on CUDA takes f32 or bf16 tensors, found {}; convert with .to(DType::f32)", dtype_name(dtype));
    element = dtype_size(dtype);
    x = static_cast<size_t>(g.N * g.C * g.H * g.W) * element;
    w = static_cast<size_t>(g.K * g.c_per_group() * g.R * g.S) * element;
    y = static_cast<size_t>(g.N * g.K * g.P * g.Q) * element;
    emu::library_call_begins(call);
  }
  void check(const char* name, const void* ptr, size_t nbytes) const {
    emu::check_library_operand(call, name, ptr, nbytes);
  }
};

}  // namespace

void conv2d_forward_cuda(int device, void* y, const void* x, const void* weight, const void* bias, DType dtype,
                         bool channels_last, const Conv2dGeometry& g) {
  const ConvOperands ops("cudnnConvolutionForward (CPU stand-in)", dtype, g);
  if (g.N * g.K * g.P * g.Q == 0) return;
  ops.check("x", x, ops.x);
  ops.check("w", weight, ops.w);
  ops.check("y", y, ops.y);
  const auto xf = to_nchw(x, dtype, channels_last, g.N, g.C, g.H, g.W);
  const auto wf = to_nchw(weight, dtype, channels_last, g.K, g.c_per_group(), g.R, g.S);
  std::vector<float> yf(static_cast<size_t>(g.N * g.K * g.P * g.Q));
  conv2d_forward_cpu<float>(yf.data(), xf.data(), wf.data(), nullptr, g);
  from_nchw(y, dtype, channels_last, yf, g.N, g.K, g.P, g.Q);
  emu::check_guard_zones(ops.call);
  if (bias) conv2d_bias_forward_cuda(device, y, bias, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

void conv2d_backward_data_cuda(int device, void* dx, const void* dy, const void* weight, DType dtype,
                               bool channels_last, const Conv2dGeometry& g) {
  const ConvOperands ops("cudnnConvolutionBackwardData (CPU stand-in)", dtype, g);
  if (g.N * g.C * g.H * g.W == 0) return;
  if (g.K == 0) {
    CUDA_CHECK(cudaMemsetAsync(dx, 0, g.N * g.C * g.H * g.W * dtype_size(dtype), cuda::stream(device)));
    return;
  }
  ops.check("dy", dy, ops.y);
  ops.check("w", weight, ops.w);
  ops.check("dx", dx, ops.x);
  const auto dyf = to_nchw(dy, dtype, channels_last, g.N, g.K, g.P, g.Q);
  const auto wf = to_nchw(weight, dtype, channels_last, g.K, g.c_per_group(), g.R, g.S);
  std::vector<float> dxf(static_cast<size_t>(g.N * g.C * g.H * g.W));
  conv2d_backward_data_cpu<float>(dxf.data(), dyf.data(), wf.data(), g);
  from_nchw(dx, dtype, channels_last, dxf, g.N, g.C, g.H, g.W);
  emu::check_guard_zones(ops.call);
}

void conv2d_backward_filter_cuda(int device, void* dweight, void* dbias, const void* dy, const void* x, DType dtype,
                                 bool channels_last, const Conv2dGeometry& g) {
  const ConvOperands ops("cudnnConvolutionBackwardFilter (CPU stand-in)", dtype, g);
  if (g.N * g.P * g.Q == 0) {
    cudaStream_t stream = cuda::stream(device);
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, g.K * g.c_per_group() * g.R * g.S * dtype_size(dtype), stream));
    if (dbias) CUDA_CHECK(cudaMemsetAsync(dbias, 0, g.K * dtype_size(dtype), stream));
    return;
  }
  if (g.K == 0) return;
  ops.check("dy", dy, ops.y);
  ops.check("x", x, ops.x);
  ops.check("dw", dweight, ops.w);
  const auto dyf = to_nchw(dy, dtype, channels_last, g.N, g.K, g.P, g.Q);
  const auto xf = to_nchw(x, dtype, channels_last, g.N, g.C, g.H, g.W);
  std::vector<float> dwf(static_cast<size_t>(g.K * g.c_per_group() * g.R * g.S));
  conv2d_backward_filter_cpu<float>(dwf.data(), nullptr, dyf.data(), xf.data(), g);
  from_nchw(dweight, dtype, channels_last, dwf, g.K, g.c_per_group(), g.R, g.S);
  emu::check_guard_zones(ops.call);
  if (dbias) conv2d_bias_backward_cuda(device, dbias, dy, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

}  // namespace engine
