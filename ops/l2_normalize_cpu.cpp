// l2_normalize_cpu.cpp - the reference loops: one pass for the row's sum, one for the update.
#include <algorithm>
#include <cmath>

#include "ops/l2_normalize.h"

namespace engine {

template <typename T>
void l2_normalize_forward_cpu(T* y, T* norm, const T* x, int64_t rows, int64_t dim, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    double sum_sq = 0.0;
    for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(xr[d]) * static_cast<double>(xr[d]);
    const double n = std::sqrt(sum_sq);
    norm[r] = static_cast<T>(n);
    const T denom = static_cast<T>(std::max(n, eps));
    for (int64_t d = 0; d < dim; ++d) yr[d] = xr[d] / denom;
  }
}

template <typename T>
void l2_normalize_backward_cpu(T* dx, const T* dy, const T* y, const T* norm, int64_t rows, int64_t dim, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * dim;
    const T* dyr = dy + r * dim;
    T* dxr = dx + r * dim;
    if (static_cast<double>(norm[r]) <= eps) {
      const T clamp = static_cast<T>(eps);
      for (int64_t d = 0; d < dim; ++d) dxr[d] = dyr[d] / clamp;
      continue;
    }
    double dot = 0.0;
    for (int64_t d = 0; d < dim; ++d) dot += static_cast<double>(yr[d]) * static_cast<double>(dyr[d]);
    const T y_dot_dy = static_cast<T>(dot), n = norm[r];
    for (int64_t d = 0; d < dim; ++d) dxr[d] = (dyr[d] - yr[d] * y_dot_dy) / n;
  }
}

template void l2_normalize_forward_cpu<float>(float*, float*, const float*, int64_t, int64_t, double);
template void l2_normalize_forward_cpu<double>(double*, double*, const double*, int64_t, int64_t, double);
template void l2_normalize_backward_cpu<float>(float*, const float*, const float*, const float*, int64_t, int64_t,
                                               double);
template void l2_normalize_backward_cpu<double>(double*, const double*, const double*, const double*, int64_t,
                                                int64_t, double);

}  // namespace engine
