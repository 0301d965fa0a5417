// momentum_update_cpu.cpp - the reference loop of the key encoder's moving average.
#include "ops/momentum_update.h"

namespace engine {

template <typename T>
void momentum_update_cpu(T* key, const T* query, int64_t n, double m) {
  const T key_weight = static_cast<T>(m), query_weight = static_cast<T>(1.0 - m);
  // Two rounded products and a rounded sum: this file is compiled with -ffp-contract=off, so the
  // compiler cannot fuse them into an FMA (which would change the last bit).
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) key[i] = key[i] * key_weight + query[i] * query_weight;
}

template void momentum_update_cpu<float>(float*, const float*, int64_t, double);
template void momentum_update_cpu<double>(double*, const double*, int64_t, double);

}  // namespace engine
