// pooling_cpu.cpp - CPU references of maxpool2d and global average pooling.
#include <cmath>
#include <limits>

#include "ops/pooling.h"

namespace engine {

template <typename T>
void maxpool2d_forward_cpu(T* y, int32_t* argmax, const T* x, const MaxPool2dGeometry& g) {
  const ChannelLayout in = g.input(), out = g.output();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t c = 0; c < g.C; ++c) {
      for (int64_t i = 0; i < g.P; ++i) {
        for (int64_t j = 0; j < g.Q; ++j) {
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_at = -1;
          for (int64_t h = i * g.stride - g.padding; h < i * g.stride - g.padding + g.kernel; ++h) {
            if (h < 0 || h >= g.H) continue;
            for (int64_t w = j * g.stride - g.padding; w < j * g.stride - g.padding + g.kernel; ++w) {
              if (w < 0 || w >= g.W) continue;
              const T v = x[in.offset(n, c, h * g.W + w)];
              if (best_at < 0 || v > best || std::isnan(v)) {
                best = v;
                best_at = h * g.W + w;
                if (std::isnan(v)) break;
              }
            }
            if (std::isnan(best)) break;
          }
          y[out.offset(n, c, i * g.Q + j)] = best;
          argmax[out.offset(n, c, i * g.Q + j)] = static_cast<int32_t>(best_at);
        }
      }
    }
  }
}

template <typename T>
void maxpool2d_backward_cpu(T* dx, const T* dy, const int32_t* argmax, const MaxPool2dGeometry& g) {
  const ChannelLayout in = g.input(), out = g.output();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t c = 0; c < g.C; ++c) {
      for (int64_t i = 0; i < g.H * g.W; ++i) dx[in.offset(n, c, i)] = T(0);
      for (int64_t i = 0; i < g.P * g.Q; ++i) dx[in.offset(n, c, argmax[out.offset(n, c, i)])] += dy[out.offset(n, c, i)];
    }
  }
}

template <typename T>
void avgpool_global_forward_cpu(T* y, const T* x, ChannelLayout l) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < l.N; ++n) {
    for (int64_t c = 0; c < l.C; ++c) {
      double sum = 0.0;
      for (int64_t i = 0; i < l.HW; ++i) sum += static_cast<double>(x[l.offset(n, c, i)]);
      y[n * l.C + c] = static_cast<T>(sum / static_cast<double>(l.HW));
    }
  }
}

template <typename T>
void avgpool_global_backward_cpu(T* dx, const T* dy, ChannelLayout l) {
  const T scale = T(1) / static_cast<T>(l.HW);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < l.N; ++n)
    for (int64_t c = 0; c < l.C; ++c)
      for (int64_t i = 0; i < l.HW; ++i) dx[l.offset(n, c, i)] = dy[n * l.C + c] * scale;
}

template <typename T>
void region_avgpool_forward_cpu(T* y, const T* x, const T* weights, const int64_t* image, int64_t R,
                                ChannelLayout l) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = 0; c < l.C; ++c) {
      const T* w = weights + r * l.HW;
      double sum = 0.0, total = 0.0;
      for (int64_t i = 0; i < l.HW; ++i) {
        sum += static_cast<double>(w[i]) * static_cast<double>(x[l.offset(image[r], c, i)]);
        total += static_cast<double>(w[i]);
      }
      y[r * l.C + c] = total > 0.0 ? static_cast<T>(sum / total) : T(0);
    }
  }
}

#define ENGINE_INSTANTIATE_POOLING_CPU(T)                                                                   \
  template void maxpool2d_forward_cpu<T>(T*, int32_t*, const T*, const MaxPool2dGeometry&);                \
  template void maxpool2d_backward_cpu<T>(T*, const T*, const int32_t*, const MaxPool2dGeometry&);         \
  template void avgpool_global_forward_cpu<T>(T*, const T*, ChannelLayout);                                \
  template void avgpool_global_backward_cpu<T>(T*, const T*, ChannelLayout);                               \
  template void region_avgpool_forward_cpu<T>(T*, const T*, const T*, const int64_t*, int64_t, ChannelLayout);
ENGINE_INSTANTIATE_POOLING_CPU(float)
ENGINE_INSTANTIATE_POOLING_CPU(double)
#undef ENGINE_INSTANTIATE_POOLING_CPU

}  // namespace engine
