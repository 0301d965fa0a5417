// cuda_libraries_emulated.cpp - the CUDA emulation build's stand-in for cuBLAS and cuDNN. The
// emulation runs our own kernels, not NVIDIA's libraries: matmul (cuBLAS) and the three convolution
// passes (cuDNN) compute the CPU reference's result on the same (host) memory, converting bf16 and
// the NHWC layout on the way with the engine's strided copy, while the conv2d bias still goes
// through our CUDA kernels exactly as after cuDNN. Each stand-in checks its operands as the library would need them (device memory in
// use, large enough) and, after writing, the buffers' guard zones. While the calling thread captures a
// CUDA graph, a stand-in records itself, its arguments copied, and runs (and checks) at replay
// (device_memory.h). The complete list is in docs/ARCHITECTURE.md ("CUDA emulation").
#include <vector>

#include "engine/cuda_common.cuh"
#include "engine/cuda_emulation/device_memory.h"
#include "engine/tensor_copy.h"
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
void matmul_forward_cuda(int device, T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, int64_t lda, int64_t ldb, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const char* call = "cublasGemm (CPU stand-in)";
  if (emu::record_library_call(call, [=] {
        matmul_forward_cuda<T>(device, c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc);
      }))
    return;
  emu::run_queued_copies();
  const size_t e = sizeof(T);
  emu::check_library_operand(call, "A", a, trans_a ? matrix_bytes(K, M, lda, e) : matrix_bytes(M, K, lda, e));
  emu::check_library_operand(call, "B", b, trans_b ? matrix_bytes(N, K, ldb, e) : matrix_bytes(K, N, ldb, e));
  emu::check_library_operand(call, "C", c, matrix_bytes(M, N, ldc, e));
  matmul_forward_cpu_best(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc);
  emu::check_guard_zones(call);
}
template void matmul_forward_cuda<float>(int, float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                         bool, int64_t, int64_t, int64_t);
template void matmul_forward_cuda<double>(int, double*, const double*, const double*, int64_t, int64_t, int64_t,
                                          bool, bool, int64_t, int64_t, int64_t);

namespace {

// One operand of a convolution pass: N x C x H x W in cuDNN's layout, NCHW, or NHWC when
// channels_last (the weight is then K x C x R x S stored KRSC).
struct ConvOperand {
  const char* name;
  const void* data;
  int64_t n, c, h, w;
  int64_t numel() const { return n * c * h * w; }
  StridedGeometry geometry(bool channels_last) const {
    StridedGeometry g;
    g.ndim = 4;
    const int64_t shape[4] = {n, c, h, w};
    const int64_t nchw[4] = {c * h * w, h * w, w, 1}, nhwc[4] = {h * w * c, 1, w * c, c};
    for (int k = 0; k < 4; ++k) {
      g.shape[k] = shape[k];
      g.strides[k] = channels_last ? nhwc[k] : nchw[k];
    }
    return g;
  }
};

// A convolution pass as cuDNN's would run it, on the CPU: the operands checked as cuDNN needs them,
// the inputs copied to contiguous NCHW floats (the strided copy of engine/tensor_copy.h converts
// bf16 and the layout), compute(out, in0, in1), the result copied back into out's dtype and layout,
// then the guard zones checked. In a capture, all of it runs at replay.
template <typename Compute>
void convolve_on_cpu(const char* call, DType dtype, bool channels_last, const ConvOperand& in0,
                     const ConvOperand& in1, void* out_data, const ConvOperand& out, Compute compute) {
  if (emu::record_library_call(call, [=] { convolve_on_cpu(call, dtype, channels_last, in0, in1, out_data, out, compute); }))
    return;
  emu::run_queued_copies();
  const size_t element = dtype_size(dtype);
  for (const ConvOperand* o : {&in0, &in1, &out})
    emu::check_library_operand(call, o->name, o->data, static_cast<size_t>(o->numel()) * element);
  std::vector<float> a(static_cast<size_t>(in0.numel())), b(static_cast<size_t>(in1.numel())),
      y(static_cast<size_t>(out.numel()));
  copy_strided_cpu(a.data(), DType::f32, in0.geometry(false), in0.data, dtype, in0.geometry(channels_last));
  copy_strided_cpu(b.data(), DType::f32, in1.geometry(false), in1.data, dtype, in1.geometry(channels_last));
  compute(y.data(), a.data(), b.data());
  copy_strided_cpu(out_data, dtype, out.geometry(channels_last), y.data(), DType::f32, out.geometry(false));
  emu::check_guard_zones(call);
}

void check_dtype(DType dtype) {
  ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16,
               "conv2d on CUDA takes f32 or bf16 tensors, found {}; convert with .to(DType::f32)", dtype_name(dtype));
}

}  // namespace

void conv2d_forward_cuda(int device, void* y, const void* x, const void* weight, const void* bias, DType dtype,
                         bool channels_last, const Conv2dGeometry& g) {
  check_dtype(dtype);
  if (g.N * g.K * g.P * g.Q == 0) return;
  convolve_on_cpu("cudnnConvolutionForward (CPU stand-in)", dtype, channels_last, {"x", x, g.N, g.C, g.H, g.W},
                  {"w", weight, g.K, g.c_per_group(), g.R, g.S}, y, {"y", y, g.N, g.K, g.P, g.Q},
                  [g](float* out, const float* xf, const float* wf) {
                    conv2d_forward_cpu<float>(out, xf, wf, nullptr, g);
                  });
  if (bias) conv2d_bias_forward_cuda(device, y, bias, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

void conv2d_backward_data_cuda(int device, void* dx, const void* dy, const void* weight, DType dtype,
                               bool channels_last, const Conv2dGeometry& g) {
  check_dtype(dtype);
  if (g.N * g.C * g.H * g.W == 0) return;
  if (g.K == 0) {
    CUDA_CHECK(cudaMemsetAsync(dx, 0, g.N * g.C * g.H * g.W * dtype_size(dtype), cuda::stream(device)));
    return;
  }
  convolve_on_cpu("cudnnConvolutionBackwardData (CPU stand-in)", dtype, channels_last,
                  {"dy", dy, g.N, g.K, g.P, g.Q}, {"w", weight, g.K, g.c_per_group(), g.R, g.S}, dx,
                  {"dx", dx, g.N, g.C, g.H, g.W}, [g](float* out, const float* dyf, const float* wf) {
                    conv2d_backward_data_cpu<float>(out, dyf, wf, g);
                  });
}

void conv2d_backward_filter_cuda(int device, void* dweight, void* dbias, const void* dy, const void* x, DType dtype,
                                 bool channels_last, const Conv2dGeometry& g) {
  check_dtype(dtype);
  if (g.N * g.P * g.Q == 0) {
    cudaStream_t stream = cuda::stream(device);
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, g.K * g.c_per_group() * g.R * g.S * dtype_size(dtype), stream));
    if (dbias) CUDA_CHECK(cudaMemsetAsync(dbias, 0, g.K * dtype_size(dtype), stream));
    return;
  }
  if (g.K == 0) return;
  convolve_on_cpu("cudnnConvolutionBackwardFilter (CPU stand-in)", dtype, channels_last,
                  {"dy", dy, g.N, g.K, g.P, g.Q}, {"x", x, g.N, g.C, g.H, g.W}, dweight,
                  {"dw", dweight, g.K, g.c_per_group(), g.R, g.S}, [g](float* out, const float* dyf, const float* xf) {
                    conv2d_backward_filter_cpu<float>(out, nullptr, dyf, xf, g);
                  });
  if (dbias) conv2d_bias_backward_cuda(device, dbias, dy, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

}  // namespace engine
