// matmul_cpu.cpp - the naive GEMM (the specification) and the OpenBLAS path.
#include "ops/matmul.h"

#if ENGINE_WITH_BLAS
#include <cblas.h>
#endif

namespace engine {

template <typename T>
void matmul_forward_cpu(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                        int64_t lda, int64_t ldb, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const T a_mk = trans_a ? a[k * lda + m] : a[m * lda + k];
        const T b_kn = trans_b ? b[n * ldb + k] : b[k * ldb + n];
        acc += static_cast<double>(a_mk) * static_cast<double>(b_kn);
      }
      c[m * ldc + n] = static_cast<T>(acc);
    }
  }
}

template <typename T>
bool matmul_forward_cpu_blas(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                             bool trans_b, int64_t lda, int64_t ldb, int64_t ldc) {
#if ENGINE_WITH_BLAS
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  }
  return true;
#else
  (void)c, (void)a, (void)b, (void)M, (void)N, (void)K, (void)trans_a, (void)trans_b, (void)lda, (void)ldb, (void)ldc;
  return false;
#endif
}

template void matmul_forward_cpu<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, bool,
                                        int64_t, int64_t, int64_t);
template void matmul_forward_cpu<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool,
                                         bool, int64_t, int64_t, int64_t);
template bool matmul_forward_cpu_blas<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool,
                                             bool, int64_t, int64_t, int64_t);
template bool matmul_forward_cpu_blas<double>(double*, const double*, const double*, int64_t, int64_t, int64_t,
                                              bool, bool, int64_t, int64_t, int64_t);

}  // namespace engine
