// infonce_cpu.cpp - the reference: the queue GEMM through OpenBLAS (or the naive loop), then plain
// loops per row in double. Rows are independent, so the row loops run in parallel (OpenMP); the
// mean over rows is summed afterwards in row order, so the result does not depend on the threads.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/infonce.h"
#include "ops/matmul.h"

namespace engine {

template <typename T>
void infonce_forward_cpu(T* loss, int64_t* correct, T* lse, T* key_dots, T* queue_dots, const T* q, const T* k,
                         const T* queue, const T* hard, int64_t N, int64_t D, int64_t K, int64_t n_h, double alpha,
                         double temperature) {
  matmul_forward_cpu_best<T>(queue_dots, q, queue, N, K, D, false, false, D, K, K);
  const int64_t width = 1 + n_h;
  std::vector<double> row_loss(N);
  std::vector<int64_t> rank(N);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* qi = q + i * D;
    const T* dots = queue_dots + i * K;
    T* kd = key_dots + i * width;
    // The logits are formed from the dot products as stored (rounded to T), so that the backward,
    // which reads them back, sees exactly the logits the forward normalised.
    kd[0] = static_cast<T>(dot_in_double(qi, k + i * D, D));
    for (int64_t h = 0; h < n_h; ++h) kd[1 + h] = static_cast<T>(dot_in_double(qi, hard + (i * n_h + h) * D, D));
    const double s0 = static_cast<double>(kd[0]), z0 = s0 / temperature;

    double z_max = z0;
    for (int64_t j = 0; j < K; ++j) z_max = std::max(z_max, static_cast<double>(dots[j]) / temperature);
    for (int64_t h = 0; h < n_h; ++h) z_max = std::max(z_max, alpha * static_cast<double>(kd[1 + h]) / temperature);

    double sum_exp = std::exp(z0 - z_max);
    int64_t above = 0;
    for (int64_t j = 0; j < K; ++j) {
      const double s = static_cast<double>(dots[j]);
      sum_exp += std::exp(s / temperature - z_max);
      above += s > s0;
    }
    for (int64_t h = 0; h < n_h; ++h) {
      const double s = alpha * static_cast<double>(kd[1 + h]);
      sum_exp += std::exp(s / temperature - z_max);
      above += s > s0;
    }
    const double row_lse = z_max + std::log(sum_exp);
    lse[i] = static_cast<T>(row_lse);
    row_loss[i] = row_lse - z0;
    rank[i] = above;
  }
  double total = 0.0;
  for (int64_t i = 0; i < N; ++i) total += row_loss[i];
  *loss = static_cast<T>(total / static_cast<double>(N));
  correct[0] = std::count_if(rank.begin(), rank.end(), [](int64_t r) { return r < 1; });
  correct[1] = std::count_if(rank.begin(), rank.end(), [](int64_t r) { return r < 5; });
}

template <typename T>
void infonce_backward_cpu(T* dq, T* queue_dots, const T* dloss, const T* lse, const T* key_dots, const T* k,
                          const T* queue, const T* hard, int64_t N, int64_t D, int64_t K, int64_t n_h, double alpha,
                          double temperature) {
  const double g = static_cast<double>(*dloss) / (temperature * static_cast<double>(N));
  // queue_dots[i, j] <- g p_i,j+1: the weights of the queue columns in dq.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    T* row = queue_dots + i * K;
    const double row_lse = static_cast<double>(lse[i]);
    for (int64_t j = 0; j < K; ++j)
      row[j] = static_cast<T>(g * std::exp(static_cast<double>(row[j]) / temperature - row_lse));
  }
  // dq = (g p) queue^T: the queue is stored (D, K), so op(b) = queue^T is its transpose.
  matmul_forward_cpu_best<T>(dq, queue_dots, queue, N, D, K, false, true, K, K, D);

  const int64_t width = 1 + n_h;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; ++i) {
    const T* kd = key_dots + i * width;
    const double row_lse = static_cast<double>(lse[i]);
    const double c0 = g * (std::exp(static_cast<double>(kd[0]) / temperature - row_lse) - 1.0);
    std::vector<double> ch(n_h);
    for (int64_t h = 0; h < n_h; ++h)
      ch[h] = g * alpha * std::exp(alpha * static_cast<double>(kd[1 + h]) / temperature - row_lse);
    const T* ki = k + i * D;
    T* dqi = dq + i * D;
    for (int64_t d = 0; d < D; ++d) {
      double acc = static_cast<double>(dqi[d]) + c0 * static_cast<double>(ki[d]);
      for (int64_t h = 0; h < n_h; ++h) acc += ch[h] * static_cast<double>(hard[(i * n_h + h) * D + d]);
      dqi[d] = static_cast<T>(acc);
    }
  }
}

template void infonce_forward_cpu<float>(float*, int64_t*, float*, float*, float*, const float*, const float*,
                                         const float*, const float*, int64_t, int64_t, int64_t, int64_t, double,
                                         double);
template void infonce_forward_cpu<double>(double*, int64_t*, double*, double*, double*, const double*, const double*,
                                          const double*, const double*, int64_t, int64_t, int64_t, int64_t, double,
                                          double);
template void infonce_backward_cpu<float>(float*, float*, const float*, const float*, const float*, const float*,
                                          const float*, const float*, int64_t, int64_t, int64_t, int64_t, double,
                                          double);
template void infonce_backward_cpu<double>(double*, double*, const double*, const double*, const double*,
                                           const double*, const double*, const double*, int64_t, int64_t, int64_t,
                                           int64_t, double, double);

}  // namespace engine
