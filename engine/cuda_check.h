// cuda_check.h - checked wrappers for every CUDA, cuBLAS, cuDNN and NCCL call, and for launches
// (detail::check_launch, which cuda::launch in cuda_common.cuh calls).
//
// Each reports the call as written, file:line and the library's own error string, and throws
// engine::Error. The *_WARN forms print instead of throwing, for destructors.
//
//   CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream));
//   cuda::launch("my_kernel", my_kernel, grid, block, 0, stream, args...);  // checks the launch
//
// Only translation units of the CUDA backend include this header. The emulation build
// (ENGINE_CUDA_EMULATION) has the CUDA runtime only: no cuBLAS, cuDNN or NCCL.
#pragma once

#include <cuda_runtime.h>
#if !ENGINE_CUDA_EMULATION
#include <cublas_v2.h>
#endif
#if ENGINE_WITH_CUDNN
#include <cudnn.h>
#endif
#if ENGINE_WITH_NCCL
#include <nccl.h>
#endif

#include "engine/check.h"

#if !ENGINE_CUDA_EMULATION
namespace engine::detail {
const char* cublas_status_string(cublasStatus_t status);
}  // namespace engine::detail
#endif

#define ENGINE_LIBRARY_CHECK_(call, ok, error_string, hint)                                        \
  do {                                                                                             \
    const auto engine_status_ = (call);                                                            \
    if (engine_status_ != (ok)) [[unlikely]]                                                       \
      ::engine::detail::throw_error(__FILE__, __LINE__, #call,                                     \
                                    ENGINE_FORMAT("returned {} ({}){}", static_cast<int>(engine_status_), \
                                                  error_string(engine_status_), hint));            \
  } while (0)

#define ENGINE_LIBRARY_WARN_(call, ok, error_string)                                         \
  do {                                                                                       \
    const auto engine_status_ = (call);                                                      \
    if (engine_status_ != (ok))                                                              \
      ::engine::warn(__FILE__, __LINE__,                                                     \
                     ENGINE_FORMAT("{} returned {} ({})", #call, static_cast<int>(engine_status_), \
                                   error_string(engine_status_)));                          \
  } while (0)

#define CUDA_CHECK(call) ENGINE_LIBRARY_CHECK_(call, cudaSuccess, cudaGetErrorString, "")
#define CUDA_WARN(call) ENGINE_LIBRARY_WARN_(call, cudaSuccess, cudaGetErrorString)
#if !ENGINE_CUDA_EMULATION
#define CUBLAS_CHECK(call) \
  ENGINE_LIBRARY_CHECK_(call, CUBLAS_STATUS_SUCCESS, ::engine::detail::cublas_status_string, "")
#endif
#if ENGINE_WITH_CUDNN
#define CUDNN_CHECK(call) ENGINE_LIBRARY_CHECK_(call, CUDNN_STATUS_SUCCESS, cudnnGetErrorString, "")
#define CUDNN_WARN(call) ENGINE_LIBRARY_WARN_(call, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#endif
#if ENGINE_WITH_NCCL
#define NCCL_CHECK(call)                                                    \
  ENGINE_LIBRARY_CHECK_(call, ncclSuccess, ncclGetErrorString,              \
                        "; NCCL_DEBUG=INFO in the environment prints why")
#endif

namespace engine::detail {
// After every kernel launch (cuda::launch calls it with the launch's own file and line): catches bad
// launch configurations at once (asynchronous faults surface at the next synchronising call, which
// is checked too).
inline void check_launch(const char* file, int line, const char* kernel_name) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) [[unlikely]]
    throw_error(file, line, kernel_name,
                ENGINE_FORMAT("kernel launch failed: {} ({})", cudaGetErrorName(status), cudaGetErrorString(status)));
}
}  // namespace engine::detail
