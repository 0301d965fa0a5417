// nt_xent_cpu.cpp - the reference: the similarity GEMM and the gradient GEMM through OpenBLAS (or the
// naive loop), plain loops per row in double between them. Rows are independent, so the row loops run
// in parallel (OpenMP); the mean over rows is summed afterwards in row order, so the result does not
// depend on the threads.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/matmul.h"
#include "ops/nt_xent.h"

namespace engine {

template <typename T>
void nt_xent_forward_cpu(T* loss, int64_t* correct, T* lse, T* hard_dots, T* sim, const T* z, const T* hard,
                         int64_t B, int64_t D, int64_t n_h, double alpha, double temperature) {
  const int64_t n = 2 * B;
  matmul_forward_cpu_best<T>(sim, z, z, n, n, D, false, true, D, D, n);  // sim = z z^T
  std::vector<double> row_loss(n);
  std::vector<int64_t> rank(n);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = (r + B) % n, i = r % B;
    const T* zr = z + r * D;
    const T* dots = sim + r * n;
    T* hd = hard_dots + r * n_h;
    // The hard logits are formed from the dot products as stored (rounded to T), so that the
    // backward, which reads them back, sees exactly the logits the forward normalised.
    for (int64_t h = 0; h < n_h; ++h) hd[h] = static_cast<T>(dot_in_double(zr, hard + (i * n_h + h) * D, D));
    const double s_pos = static_cast<double>(dots[p]);

    double z_max = -INFINITY;
    for (int64_t j = 0; j < n; ++j)
      if (j != r) z_max = std::max(z_max, static_cast<double>(dots[j]) / temperature);
    for (int64_t h = 0; h < n_h; ++h) z_max = std::max(z_max, alpha * static_cast<double>(hd[h]) / temperature);

    double sum_exp = 0.0;
    int64_t above = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == r) continue;
      const double s = static_cast<double>(dots[j]);
      sum_exp += std::exp(s / temperature - z_max);
      above += s > s_pos;  // the positive itself is not above itself
    }
    for (int64_t h = 0; h < n_h; ++h) {
      const double s = alpha * static_cast<double>(hd[h]);
      sum_exp += std::exp(s / temperature - z_max);
      above += s > s_pos;
    }
    const double row_lse = z_max + std::log(sum_exp);
    lse[r] = static_cast<T>(row_lse);
    row_loss[r] = row_lse - s_pos / temperature;
    rank[r] = above;
  }
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) total += row_loss[r];
  *loss = static_cast<T>(total / static_cast<double>(n));
  correct[0] = std::count_if(rank.begin(), rank.end(), [](int64_t k) { return k < 1; });
  correct[1] = std::count_if(rank.begin(), rank.end(), [](int64_t k) { return k < 5; });
}

template <typename T>
void nt_xent_backward_cpu(T* dz, T* sim, const T* dloss, const T* lse, const T* hard_dots, const T* z,
                          const T* hard, int64_t B, int64_t D, int64_t n_h, double alpha, double temperature) {
  const int64_t n = 2 * B;
  const double g = static_cast<double>(*dloss) / (temperature * static_cast<double>(n));
  // G_rj = P_rj - [j = p(r)] for j != r, from the logit s_rj = S_rj / T of row r.
  auto weight = [&](int64_t r, int64_t j) {
    return std::exp(static_cast<double>(sim[r * n + j]) / temperature - static_cast<double>(lse[r])) -
           (j == (r + B) % n ? 1.0 : 0.0);
  };
  // sim <- W = g (G + G^T). Iteration r owns the pairs (r, j > r): it reads and writes S_rj and S_jr
  // and nothing else, so the iterations never touch one element twice. Row r has n - 1 - r pairs:
  // dynamic scheduling balances the triangle.
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t r = 0; r < n; ++r) {
    sim[r * n + r] = T(0);
    for (int64_t j = r + 1; j < n; ++j) {
      const T w = static_cast<T>(g * (weight(r, j) + weight(j, r)));
      sim[r * n + j] = w;
      sim[j * n + r] = w;
    }
  }
  matmul_forward_cpu_best<T>(dz, sim, z, n, D, n, false, false, n, D, D);  // dz = W z

  if (n_h == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = r % B;
    const double row_lse = static_cast<double>(lse[r]);
    std::vector<double> ch(n_h);
    for (int64_t h = 0; h < n_h; ++h)
      ch[h] = g * alpha * std::exp(alpha * static_cast<double>(hard_dots[r * n_h + h]) / temperature - row_lse);
    T* dzr = dz + r * D;
    for (int64_t d = 0; d < D; ++d) {
      double acc = static_cast<double>(dzr[d]);
      for (int64_t h = 0; h < n_h; ++h) acc += ch[h] * static_cast<double>(hard[(i * n_h + h) * D + d]);
      dzr[d] = static_cast<T>(acc);
    }
  }
}

template void nt_xent_forward_cpu<float>(float*, int64_t*, float*, float*, float*, const float*, const float*,
                                         int64_t, int64_t, int64_t, double, double);
template void nt_xent_forward_cpu<double>(double*, int64_t*, double*, double*, double*, const double*,
                                          const double*, int64_t, int64_t, int64_t, double, double);
template void nt_xent_backward_cpu<float>(float*, float*, const float*, const float*, const float*, const float*,
                                          const float*, int64_t, int64_t, int64_t, double, double);
template void nt_xent_backward_cpu<double>(double*, double*, const double*, const double*, const double*,
                                           const double*, const double*, int64_t, int64_t, int64_t, double,
                                           double);

}  // namespace engine
