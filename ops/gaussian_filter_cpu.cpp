// gaussian_filter_cpu.cpp - the reference loops of the separable Gaussian blur with reflect padding.
#include <vector>

#include "ops/gaussian_filter.h"

namespace engine {

namespace {

// Reflect an index that lies at most n - 1 outside [0, n) back inside, without repeating the edge.
inline int64_t reflect(int64_t i, int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

}  // namespace

template <typename T>
void gaussian_blur_cpu(T* out, const T* x, int64_t planes, int64_t H, int64_t W, const float* taps, int k) {
  const int64_t pad = (k - 1) / 2;
  std::vector<T> weight(taps, taps + k);
#pragma omp parallel for schedule(static) if (planes * H * W > (1 << 16))
  for (int64_t p = 0; p < planes; ++p) {
    const T* src = x + p * H * W;
    T* dst = out + p * H * W;
    std::vector<T> rows(H * W);  // the horizontal pass of this plane
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t w = 0; w < W; ++w) {
        T acc = 0;
        for (int j = 0; j < k; ++j) acc += weight[j] * src[h * W + reflect(w - pad + j, W)];
        rows[h * W + w] = acc;
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t w = 0; w < W; ++w) {
        T acc = 0;
        for (int j = 0; j < k; ++j) acc += weight[j] * rows[reflect(h - pad + j, H) * W + w];
        dst[h * W + w] = acc;
      }
    }
  }
}

template void gaussian_blur_cpu<float>(float*, const float*, int64_t, int64_t, int64_t, const float*, int);
template void gaussian_blur_cpu<double>(double*, const double*, int64_t, int64_t, int64_t, const float*, int);

}  // namespace engine
