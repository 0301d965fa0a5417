// conv2d_cpu.cpp - the CPU reference of conv2d: im2col + GEMM, NCHW.
//
// For one image n and one group, the columns matrix col (C/G * R * S, P * Q) holds in row
// (c, r, s) and column (p, q) the input pixel that weight[k, c, r, s] multiplies at output (p, q):
//     col[(c R + r) S + s, p Q + q] = x[n, c, p sh - ph + r dh, q sw - pw + s dw]   (0 outside)
// so that, with the group's weight as a (K/G, C/G R S) matrix,
//     forward          y_g      = W_g col               (K/G, P Q)
//     backward data    dcol     = W_g^T dy_g, then col2im sums dcol back onto dx
//     backward filter  dW_g    += dy_g col^T            (summed over images)
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/conv2d.h"
#include "ops/matmul.h"

namespace engine {

namespace {

// C = op(A) op(B) with the fastest CPU GEMM this build has.
template <typename T>
void gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  if (!matmul_forward_cpu_blas<T>(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, N))
    matmul_forward_cpu<T>(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, N);
}

// The input row that kernel row r of output row p reads, or -1 in the padding.
inline int64_t input_row(const Conv2dGeometry& g, int64_t p, int64_t r) {
  const int64_t h = p * g.opt.stride_h - g.opt.pad_h + r * g.opt.dilation_h;
  return h >= 0 && h < g.H ? h : -1;
}
inline int64_t input_col(const Conv2dGeometry& g, int64_t q, int64_t s) {
  const int64_t w = q * g.opt.stride_w - g.opt.pad_w + s * g.opt.dilation_w;
  return w >= 0 && w < g.W ? w : -1;
}

// x_g: the group's C/G channels of one image, (C/G, H, W).
template <typename T>
void im2col(T* col, const T* x_g, const Conv2dGeometry& g) {
  const int64_t rows = g.c_per_group() * g.R * g.S;
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / (g.R * g.S), r = row / g.S % g.R, s = row % g.S;
    T* out = col + row * g.P * g.Q;
    for (int64_t p = 0; p < g.P; ++p) {
      const int64_t h = input_row(g, p, r);
      for (int64_t q = 0; q < g.Q; ++q) {
        const int64_t w = input_col(g, q, s);
        out[p * g.Q + q] = (h < 0 || w < 0) ? T(0) : x_g[(c * g.H + h) * g.W + w];
      }
    }
  }
}

// dx_g += the columns summed back onto the pixels they came from. Parallel over channels: the
// rows of one channel are summed by one thread, so no two threads write the same pixel.
template <typename T>
void col2im_add(T* dx_g, const T* col, const Conv2dGeometry& g) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < g.c_per_group(); ++c) {
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const T* in = col + ((c * g.R + r) * g.S + s) * g.P * g.Q;
        for (int64_t p = 0; p < g.P; ++p) {
          const int64_t h = input_row(g, p, r);
          if (h < 0) continue;
          for (int64_t q = 0; q < g.Q; ++q) {
            const int64_t w = input_col(g, q, s);
            if (w >= 0) dx_g[(c * g.H + h) * g.W + w] += in[p * g.Q + q];
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void conv2d_forward_cpu(T* y, const T* x, const T* weight, const T* bias, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  std::vector<T> col(g.is_pointwise() ? 0 : CRS * PQ);
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      const T* x_g = x + (n * g.C + grp * Cg) * g.H * g.W;
      const T* b = x_g;  // pointwise: x_g is already the (C/G, P Q) columns matrix
      if (!g.is_pointwise()) {
        im2col(col.data(), x_g, g);
        b = col.data();
      }
      gemm(y + (n * g.K + grp * Kg) * PQ, weight + grp * Kg * CRS, b, Kg, PQ, CRS, false, false);
    }
    if (bias) {
      for (int64_t k = 0; k < g.K; ++k) {
        T* yk = y + (n * g.K + k) * PQ;
        for (int64_t i = 0; i < PQ; ++i) yk[i] += bias[k];
      }
    }
  }
}

template <typename T>
void conv2d_backward_data_cpu(T* dx, const T* dy, const T* weight, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  if (g.is_pointwise()) {
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t grp = 0; grp < g.groups(); ++grp)
        gemm(dx + (n * g.C + grp * Cg) * PQ, weight + grp * Kg * CRS, dy + (n * g.K + grp * Kg) * PQ, CRS, PQ, Kg,
             true, false);
    return;
  }
  std::fill(dx, dx + g.N * g.C * g.H * g.W, T(0));
  std::vector<T> col(CRS * PQ);
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      gemm(col.data(), weight + grp * Kg * CRS, dy + (n * g.K + grp * Kg) * PQ, CRS, PQ, Kg, true, false);
      col2im_add(dx + (n * g.C + grp * Cg) * g.H * g.W, col.data(), g);
    }
  }
}

template <typename T>
void conv2d_backward_filter_cpu(T* dweight, T* dbias, const T* dy, const T* x, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  std::fill(dweight, dweight + g.K * CRS, T(0));
  std::vector<T> col(g.is_pointwise() ? 0 : CRS * PQ), partial(Kg * CRS);
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      const T* x_g = x + (n * g.C + grp * Cg) * g.H * g.W;
      const T* cols = x_g;
      if (!g.is_pointwise()) {
        im2col(col.data(), x_g, g);
        cols = col.data();
      }
      gemm(partial.data(), dy + (n * g.K + grp * Kg) * PQ, cols, Kg, CRS, PQ, false, true);
      T* dw_g = dweight + grp * Kg * CRS;
      for (int64_t i = 0; i < Kg * CRS; ++i) dw_g[i] += partial[i];
    }
  }
  if (dbias) {
    for (int64_t k = 0; k < g.K; ++k) {
      T sum = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T* dyk = dy + (n * g.K + k) * PQ;
        for (int64_t i = 0; i < PQ; ++i) sum += dyk[i];
      }
      dbias[k] = sum;
    }
  }
}

#define ENGINE_INSTANTIATE_CONV2D_CPU(T)                                                                   \
  template void conv2d_forward_cpu<T>(T*, const T*, const T*, const T*, const Conv2dGeometry&);           \
  template void conv2d_backward_data_cpu<T>(T*, const T*, const T*, const Conv2dGeometry&);               \
  template void conv2d_backward_filter_cpu<T>(T*, T*, const T*, const T*, const Conv2dGeometry&);
ENGINE_INSTANTIATE_CONV2D_CPU(float)
ENGINE_INSTANTIATE_CONV2D_CPU(double)
#undef ENGINE_INSTANTIATE_CONV2D_CPU

}  // namespace engine
