// matmul_cublas.cpp - row-major GEMM through column-major cuBLAS.
//
// cuBLAS is column-major. A row-major (M, N) matrix C is the column-major (N, M) matrix C^T, and
//     C = op(A) op(B)   <=>   C^T = op(B)^T op(A)^T,
// so we ask cuBLAS for the column-major product of B and A (in that order), with the same
// transpose flags and leading dimensions: no data moves.
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "ops/matmul.h"

namespace engine {

template <typename T>
void matmul_forward_cuda(int device, T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, int64_t lda, int64_t ldb, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cublasHandle_t handle = cuda::cublas_handle(device);
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const T one = 1, zero = 0;
  if constexpr (std::is_same_v<T, float>) {
    CUBLAS_CHECK(cublasSgemm(handle, op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &one,
                             b, static_cast<int>(ldb), a, static_cast<int>(lda), &zero, c, static_cast<int>(ldc)));
  } else {
    CUBLAS_CHECK(cublasDgemm(handle, op_b, op_a, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &one,
                             b, static_cast<int>(ldb), a, static_cast<int>(lda), &zero, c, static_cast<int>(ldc)));
  }
}

template void matmul_forward_cuda<float>(int, float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                         bool, int64_t, int64_t, int64_t);
template void matmul_forward_cuda<double>(int, double*, const double*, const double*, int64_t, int64_t, int64_t,
                                          bool, bool, int64_t, int64_t, int64_t);

}  // namespace engine
