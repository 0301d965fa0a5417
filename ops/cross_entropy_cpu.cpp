// cross_entropy_cpu.cpp - the reference loops, in double. Rows are independent, so the row loops run
// in parallel (OpenMP); the mean is summed afterwards in row order, so the result does not depend
// on the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/cross_entropy.h"

namespace engine {

namespace {

bool label_in_range(int64_t label, int64_t C) { return label >= 0 && label < C; }

// The classes ranked before the label in row z (higher scores, or equal ones at a lower index); the
// largest count, ranked at neither k, for a label out of range or scoring NaN.
template <typename T>
int64_t label_rank(const T* z, int64_t label, int64_t C) {
  if (!label_in_range(label, C) || std::isnan(z[label])) return std::numeric_limits<int64_t>::max();
  int64_t rank = 0;
  for (int64_t j = 0; j < C; ++j) rank += z[j] > z[label] || (z[j] == z[label] && j < label);
  return rank;
}

}  // namespace

template <typename T>
void cross_entropy_forward_cpu(T* loss, T* lse, const T* logits, const int64_t* labels, int64_t N, int64_t C,
                               int64_t* correct) {
  std::vector<double> row_loss(static_cast<size_t>(N));
  std::vector<int64_t> rank(correct ? static_cast<size_t>(N) : 0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * C;
    double z_max = static_cast<double>(z[0]);
    for (int64_t j = 1; j < C; ++j) z_max = std::max(z_max, static_cast<double>(z[j]));
    double sum_exp = 0.0;
    for (int64_t j = 0; j < C; ++j) sum_exp += std::exp(static_cast<double>(z[j]) - z_max);
    const double row_lse = z_max + std::log(sum_exp);
    lse[i] = static_cast<T>(row_lse);
    row_loss[i] = label_in_range(labels[i], C) ? row_lse - static_cast<double>(z[labels[i]])
                                               : std::numeric_limits<double>::quiet_NaN();
    if (correct) rank[i] = label_rank(z, labels[i], C);
  }
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) total += row_loss[i];
  *loss = static_cast<T>(total / static_cast<double>(N));
  if (correct) {
    correct[0] = correct[1] = 0;
    for (const int64_t r : rank) {
      correct[0] += r < 1;
      correct[1] += r < 5;
    }
  }
}

template <typename T>
void cross_entropy_backward_cpu(T* dlogits, const T* dloss, const T* logits, const T* lse, const int64_t* labels,
                                int64_t N, int64_t C) {
  const double g = static_cast<double>(*dloss) / static_cast<double>(N);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * C;
    T* dz = dlogits + i * C;
    const int64_t label = labels[i];
    if (!label_in_range(label, C)) {
      std::fill(dz, dz + C, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    const double row_lse = static_cast<double>(lse[i]);
    for (int64_t j = 0; j < C; ++j) {
      const double p = std::exp(static_cast<double>(z[j]) - row_lse);
      dz[j] = static_cast<T>(g * (p - (j == label ? 1.0 : 0.0)));
    }
  }
}

template void cross_entropy_forward_cpu<float>(float*, float*, const float*, const int64_t*, int64_t, int64_t,
                                               int64_t*);
template void cross_entropy_forward_cpu<double>(double*, double*, const double*, const int64_t*, int64_t, int64_t,
                                                int64_t*);
template void cross_entropy_backward_cpu<float>(float*, const float*, const float*, const float*, const int64_t*,
                                                int64_t, int64_t);
template void cross_entropy_backward_cpu<double>(double*, const double*, const double*, const double*,
                                                 const int64_t*, int64_t, int64_t);

}  // namespace engine
