// cuda_context.h - the per-GPU context: the stream all engine work runs on, library handles, and
// the TF32 switch. CUDA backend only. (The deterministic-algorithms switch comes with cuDNN's
// algorithm choice, where it has something to decide.)
//
// Ordering model: every op on a device is enqueued on that device's one engine stream, so ops run
// in program order without host synchronisation; copies to the host synchronise that stream.
// The caching allocator is stream-ordered over the same stream (see allocator.h).
#pragma once

#include <cuda_runtime.h>
#if !ENGINE_CUDA_EMULATION
#include <cublas_v2.h>
#endif
#if ENGINE_WITH_CUDNN
#include <cudnn.h>
#endif

#include <string>

namespace engine::cuda {

// Makes `device` current for this thread (cudaSetDevice) and returns its engine stream.
cudaStream_t stream(int device);
// The device's copy stream: the data loader's host-to-device copies run there, beside the compute
// of the engine stream, ordered against it by events (engine/stream_fence.h).
cudaStream_t copy_stream(int device);
#if !ENGINE_CUDA_EMULATION
// The cuBLAS handle of `device`, bound to its stream, math mode following tf32_enabled().
cublasHandle_t cublas_handle(int device);
#endif
#if ENGINE_WITH_CUDNN
cudnnHandle_t cudnn_handle(int device);
#endif
void synchronize(int device);

// TF32 tensor-core math for f32 GEMMs and convolutions: off by default (as PyTorch for matmul),
// so f32 results match the CPU reference to f32 rounding.
void set_tf32_enabled(bool enabled);
bool tf32_enabled();

// Versions of the runtime and libraries actually loaded, for `moco version` and logs.
std::string library_versions();

// Grid size for a grid-stride elementwise kernel over n elements.
int elementwise_grid(int64_t n, int block);

}  // namespace engine::cuda
