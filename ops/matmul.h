// matmul.h - C = op(A) op(B) for 2-D matrices, op = identity or transpose.
//
// Contract (row-major, leading dimensions in elements):
//     op(A) is (M, K): A is stored (M, K) with lda >= K, or (K, M) with lda >= M when trans_a;
//     op(B) is (K, N): B is stored (K, N) with ldb >= N, or (N, K) with ldb >= K when trans_b;
//     C (M, N), ldc >= N, is overwritten: C[m, n] = sum_k op(A)[m, k] op(B)[k, n].
// Backward, with dC of C's shape (each written by one more matmul, no transposed copies):
//     dA = dC op(B)^T        (stored as A: transposed when trans_a)
//     dB = op(A)^T dC        (stored as B: transposed when trans_b)
// The Tensor level folds a transposed view into the trans flag instead of copying it.
//
// Backends: matmul_forward_cpu is the naive triple loop, the specification; the CPU path of the
// Tensor level uses OpenBLAS (cblas_?gemm) when the build has it, checked against the loop in the
// tests. CUDA uses cuBLAS; f32 stays in full f32 unless TF32 is switched on (cuda_context.h).
#pragma once

#include <cstdint>

#include "engine/tensor.h"

namespace engine {

// ---- raw level, T = float or double ----
template <typename T>
void matmul_forward_cpu(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                        int64_t lda, int64_t ldb, int64_t ldc);
// The same through OpenBLAS; false when this build has no BLAS (nothing is written then).
template <typename T>
bool matmul_forward_cpu_blas(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                             bool trans_b, int64_t lda, int64_t ldb, int64_t ldc);
// The CPU path a CPU kernel should call for a GEMM: OpenBLAS when the build has it, else the loop.
template <typename T>
void matmul_forward_cpu_best(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                             bool trans_b, int64_t lda, int64_t ldb, int64_t ldc) {
  if (!matmul_forward_cpu_blas<T>(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc))
    matmul_forward_cpu<T>(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc);
}
// sum_d a[d] b[d], accumulated in double: the CPU references' dot products.
template <typename T>
double dot_in_double(const T* a, const T* b, int64_t n) {
  double acc = 0.0;
  for (int64_t d = 0; d < n; ++d) acc += static_cast<double>(a[d]) * static_cast<double>(b[d]);
  return acc;
}
template <typename T>
void matmul_forward_cuda(int device, T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, int64_t lda, int64_t ldb, int64_t ldc);

// ---- Tensor level ----
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

}  // namespace engine
