// conv2d_cpu.cpp - the CPU reference of conv2d: im2col + GEMM over chunks of images, NCHW.
//
// For a chunk of B images n0 .. n0+B-1 and one group, the columns matrix col (C/G * R * S, B * P * Q)
// holds in row (c, r, s) and column (b, p, q) the input pixel that weight[k, c, r, s] multiplies
// at output (p, q) of image n0 + b:
//     col[(c R + r) S + s, (b P + p) Q + q] = x[n0 + b, c, p sh - ph + r dh, q sw - pw + s dw]   (0 outside)
// so that, with the group's weight as a (K/G, C/G R S) matrix and dy_c the chunk's output
// gradient rearranged the same way, (K/G, B P Q),
//     forward          y_c      = W_g col                (K/G, B P Q), then scattered to NCHW
//     backward data    dcol     = W_g^T dy_c, then col2im sums dcol back onto dx
//     backward filter  dW_g    += dy_c col^T             (summed over chunks, in chunk order)
//
// Why chunks: one GEMM per image is small (at ResNet's last stage P Q is 64 at 64 pixels) and
// OpenBLAS packs the whole weight again for each; one GEMM over B images packs it once and gives
// the threads large tiles. B is the largest count whose columns fit kColumnBudgetBytes; it depends
// only on the shapes, so the order of every sum (and the result) does not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/conv2d.h"
#include "ops/matmul.h"

namespace engine {

namespace {

constexpr int64_t kColumnBudgetBytes = int64_t{32} << 20;

// C = op(A) op(B), all contiguous, with the fastest CPU GEMM this build has.
template <typename T>
void gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  matmul_forward_cpu_best<T>(c, a, b, M, N, K, trans_a, trans_b, lda, ldb, N);
}

// Scratch matrices kept between calls (a ResNet step calls conv2d about a hundred times with the
// same few sizes); one set per calling thread and element type, grown on demand.
enum class Scratch { Columns, Rows, Partial, Count };
template <typename T>
T* scratch(Scratch which, int64_t count) {
  thread_local std::vector<T> buffers[static_cast<int>(Scratch::Count)];
  std::vector<T>& buffer = buffers[static_cast<int>(which)];
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(count);
  return buffer.data();
}

int64_t images_per_chunk(const Conv2dGeometry& g, int64_t element_bytes) {
  const int64_t column_bytes = g.c_per_group() * g.R * g.S * g.P * g.Q * element_bytes;
  return std::clamp<int64_t>(kColumnBudgetBytes / std::max<int64_t>(column_bytes, 1), 1, g.N);
}

// The input row that kernel row r of output row p reads, or -1 in the padding.
inline int64_t input_row(const Conv2dGeometry& g, int64_t p, int64_t r) {
  const int64_t h = p * g.opt.stride_h - g.opt.pad_h + r * g.opt.dilation_h;
  return h >= 0 && h < g.H ? h : -1;
}

// For kernel column s, output column q reads input column q sw + offset; it is inside the image
// for q in [begin, end), in the padding elsewhere.
struct ColumnSpan {
  int64_t offset, begin, end;
};
ColumnSpan column_span(const Conv2dGeometry& g, int64_t s) {
  const int64_t sw = g.opt.stride_w, offset = s * g.opt.dilation_w - g.opt.pad_w;
  const int64_t begin = offset >= 0 ? 0 : (-offset + sw - 1) / sw;
  const int64_t end = offset > g.W - 1 ? 0 : (g.W - 1 - offset) / sw + 1;
  return {offset, std::min(begin, g.Q), std::clamp(end, std::min(begin, g.Q), g.Q)};
}

// col (C/G R S, B P Q) from the chunk's images; x_g points at the group's first channel of the
// chunk's first image (images g.C H W apart).
template <typename T>
void im2col(T* col, const T* x_g, int64_t B, const Conv2dGeometry& g) {
  const int64_t rows = g.c_per_group() * g.R * g.S, PQ = g.P * g.Q, sw = g.opt.stride_w;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows * B; ++i) {
    const int64_t row = i / B, b = i % B;
    const int64_t c = row / (g.R * g.S), r = row / g.S % g.R, s = row % g.S;
    const T* plane = x_g + (b * g.C + c) * g.H * g.W;
    const ColumnSpan span = column_span(g, s);
    T* out = col + row * B * PQ + b * PQ;
    for (int64_t p = 0; p < g.P; ++p, out += g.Q) {
      const int64_t h = input_row(g, p, r);
      if (h < 0) {
        std::fill(out, out + g.Q, T(0));
        continue;
      }
      const T* in = plane + h * g.W;
      std::fill(out, out + span.begin, T(0));
      for (int64_t q = span.begin; q < span.end; ++q) out[q] = in[q * sw + span.offset];
      std::fill(out + span.end, out + g.Q, T(0));
    }
  }
}

// dx_g = the columns summed back onto the pixels they came from (dx_g as x_g in im2col). Each
// (image, channel) plane is written by one thread, in a fixed (r, s, p, q) order.
template <typename T>
void col2im(T* dx_g, const T* col, int64_t B, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), PQ = g.P * g.Q, sw = g.opt.stride_w;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B * Cg; ++i) {
    const int64_t b = i / Cg, c = i % Cg;
    T* plane = dx_g + (b * g.C + c) * g.H * g.W;
    std::fill(plane, plane + g.H * g.W, T(0));
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const ColumnSpan span = column_span(g, s);
        const T* in = col + ((c * g.R + r) * g.S + s) * B * PQ + b * PQ;
        for (int64_t p = 0; p < g.P; ++p, in += g.Q) {
          const int64_t h = input_row(g, p, r);
          if (h < 0) continue;
          T* out = plane + h * g.W;
          for (int64_t q = span.begin; q < span.end; ++q) out[q * sw + span.offset] += in[q];
        }
      }
    }
  }
}

// rows (channels, B P Q) <- the chunk's planes of an NCHW tensor (t_g at the first channel of the
// chunk's first image, images `image_channels` planes apart), and back.
template <typename T>
void gather_rows(T* rows, const T* t_g, int64_t channels, int64_t image_channels, int64_t B, int64_t PQ) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < channels * B; ++i) {
    const int64_t k = i / B, b = i % B;
    std::memcpy(rows + (k * B + b) * PQ, t_g + (b * image_channels + k) * PQ, PQ * sizeof(T));
  }
}
template <typename T>
void scatter_rows(T* t_g, const T* rows, int64_t channels, int64_t image_channels, int64_t B, int64_t PQ) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < channels * B; ++i) {
    const int64_t k = i / B, b = i % B;
    std::memcpy(t_g + (b * image_channels + k) * PQ, rows + (k * B + b) * PQ, PQ * sizeof(T));
  }
}

// The (C/G R S, B P Q) columns matrix of a chunk of B images of one group (x_g: its first image's
// channels). One image's columns of a pointwise convolution are x_g itself: no copy then.
template <typename T>
const T* chunk_columns(const T* x_g, int64_t B, const Conv2dGeometry& g) {
  if (g.is_pointwise() && B == 1) return x_g;
  const int64_t Cg = g.c_per_group(), PQ = g.P * g.Q;
  T* col = scratch<T>(Scratch::Columns, Cg * g.R * g.S * B * PQ);
  if (g.is_pointwise())
    gather_rows(col, x_g, Cg, g.C, B, PQ);
  else
    im2col(col, x_g, B, g);
  return col;
}

}  // namespace

template <typename T>
void conv2d_forward_cpu(T* y, const T* x, const T* weight, const T* bias, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t B = std::min(chunk, g.N - n0);
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      const T* x_g = x + (n0 * g.C + grp * Cg) * g.H * g.W;
      T* y_g = y + (n0 * g.K + grp * Kg) * PQ;
      // One image's (K/G, P Q) output of a pointwise convolution is y_g itself: no copy then.
      const T* cols = chunk_columns(x_g, B, g);
      T* out = B > 1 ? scratch<T>(Scratch::Rows, Kg * B * PQ) : y_g;
      gemm(out, weight + grp * Kg * CRS, cols, Kg, B * PQ, CRS, false, false);
      if (B > 1) scatter_rows(y_g, out, Kg, g.K, B, PQ);
    }
  }
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < g.N * g.K; ++i) {
      T* yk = y + i * PQ;
      for (int64_t j = 0; j < PQ; ++j) yk[j] += bias[i % g.K];
    }
  }
}

template <typename T>
void conv2d_backward_data_cpu(T* dx, const T* dy, const T* weight, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t B = std::min(chunk, g.N - n0);
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      const T* dy_g = dy + (n0 * g.K + grp * Kg) * PQ;
      T* dx_g = dx + (n0 * g.C + grp * Cg) * g.H * g.W;
      const T* dy_rows = dy_g;
      if (B > 1) {
        T* rows = scratch<T>(Scratch::Rows, Kg * B * PQ);
        gather_rows(rows, dy_g, Kg, g.K, B, PQ);
        dy_rows = rows;
      }
      // A pointwise convolution's dcol of one image is dx_g itself.
      const bool direct = g.is_pointwise() && B == 1;
      T* dcol = direct ? dx_g : scratch<T>(Scratch::Columns, CRS * B * PQ);
      gemm(dcol, weight + grp * Kg * CRS, dy_rows, CRS, B * PQ, Kg, true, false);
      if (direct) continue;
      if (g.is_pointwise())
        scatter_rows(dx_g, dcol, Cg, g.C, B, PQ);
      else
        col2im(dx_g, dcol, B, g);
    }
  }
}

template <typename T>
void conv2d_backward_filter_cpu(T* dweight, T* dbias, const T* dy, const T* x, const Conv2dGeometry& g) {
  const int64_t Cg = g.c_per_group(), Kg = g.k_per_group(), PQ = g.P * g.Q, CRS = Cg * g.R * g.S;
  const int64_t chunk = images_per_chunk(g, sizeof(T));
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t B = std::min(chunk, g.N - n0);
    for (int64_t grp = 0; grp < g.groups(); ++grp) {
      const T* x_g = x + (n0 * g.C + grp * Cg) * g.H * g.W;
      const T* dy_g = dy + (n0 * g.K + grp * Kg) * PQ;
      const T* cols = chunk_columns(x_g, B, g);
      const T* dy_rows = dy_g;
      if (B > 1) {
        T* rows = scratch<T>(Scratch::Rows, Kg * B * PQ);
        gather_rows(rows, dy_g, Kg, g.K, B, PQ);
        dy_rows = rows;
      }
      // The first chunk writes dW_g; each later one adds its own product to it.
      T* dw_g = dweight + grp * Kg * CRS;
      T* product = n0 == 0 ? dw_g : scratch<T>(Scratch::Partial, Kg * CRS);
      gemm(product, dy_rows, cols, Kg, CRS, B * PQ, false, true);
      if (n0 == 0) continue;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < Kg * CRS; ++i) dw_g[i] += product[i];
    }
  }
  if (dbias) {
#pragma omp parallel for schedule(static)
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
