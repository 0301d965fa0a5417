// matmul_cpu.cpp - the naive GEMM (the specification) and the OpenBLAS path.
//
// One thread pool. OpenBLAS runs single-threaded here and the engine splits C into fixed tiles
// that OpenMP threads compute with one cblas call each. With OpenBLAS's own pthread pool next to
// OpenMP's, the idle threads of one pool spin (sched_yield) on the cores the other needs: on 2
// cores a ResNet-18 step at 32 px took 3.1 s with both pools, 2.3 s with OpenBLAS on one thread
// (bench_resnet_step, before the convolution was batched). Every element of C is computed by one
// call, over the whole K range in OpenBLAS's order, and the tiles depend only on the shape, so the
// result does not depend on the thread count.
#include <algorithm>
#include <mutex>

#include "ops/matmul.h"

#if ENGINE_WITH_BLAS
#include <cblas.h>
#endif

namespace engine {

#if ENGINE_WITH_BLAS
namespace {

// Tile sides of C. Packing a (kTileRows, K) panel of A costs K * kTileRows copies for
// 2 * K * kTileRows * kTileCols flops, negligible at these sizes; tiles small enough that a
// ResNet layer gives both cores several of them.
constexpr int64_t kTileRows = 256, kTileCols = 512;
// Below this many multiply-adds one call is cheaper than a parallel region.
constexpr int64_t kParallelMacs = int64_t{1} << 21;

void use_single_threaded_openblas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

template <typename T>
void blas_gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
               int64_t lda, int64_t ldb, int64_t ldc) {
  const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, a, lda, b, ldb, 0.0, c, ldc);
  }
}

}  // namespace
#endif

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
  use_single_threaded_openblas();
  const int64_t row_tiles = (M + kTileRows - 1) / kTileRows, col_tiles = (N + kTileCols - 1) / kTileCols;
  if (M * N * K < kParallelMacs || row_tiles * col_tiles == 1) {
    blas_gemm(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, ldc);
    return true;
  }
  // Tiles cost the same, so any thread may take any tile: dynamic keeps both cores busy when the
  // count is odd.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t tile = 0; tile < row_tiles * col_tiles; ++tile) {
    const int64_t m0 = tile / col_tiles * kTileRows, n0 = tile % col_tiles * kTileCols;
    const int64_t rows = std::min(kTileRows, M - m0), cols = std::min(kTileCols, N - n0);
    const T* a_tile = trans_a ? a + m0 : a + m0 * lda;
    const T* b_tile = trans_b ? b + n0 * ldb : b + n0;
    blas_gemm(c + m0 * ldc + n0, a_tile, b_tile, rows, cols, K, trans_a, trans_b, lda, ldb, ldc);
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
