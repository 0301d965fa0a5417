// batchnorm2d_cpu.cpp - the CPU reference of batchnorm2d and of its fused epilogues
// (batchnorm2d_relu, batchnorm2d_add_relu): plain loops, double accumulators, parallel over
// channels (each channel's sums, in every ghost group, belong to one thread; so does its
// running-statistics update, which may read every group). The fused ops are the same loops with
// the epilogue (+ residual, relu) after the normalisation and the relu mask on dy; they round
// where the unfused composition does (bn(x) to T, then the add in T), so on the CPU they match
// relu(add(batchnorm2d(x), r)) to the bit.
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ops/batchnorm2d.h"

namespace engine {

namespace {

// Calls fn(offset) for every element of channel c in group g (images g N/G .. (g + 1) N/G - 1).
template <typename Fn>
inline void for_channel(const ChannelLayout& l, int64_t groups, int64_t g, int64_t c, Fn&& fn) {
  const int64_t images = l.N / groups;
  for (int64_t n = g * images; n < (g + 1) * images; ++n)
    for (int64_t i = 0; i < l.HW; ++i) fn(l.offset(n, c, i));
}

// What follows the normalisation: nothing (batchnorm2d), relu (batchnorm2d_relu), or the
// residual's add then relu (batchnorm2d_add_relu; residual in x's layout).
template <typename T>
struct Epilogue {
  bool relu = false;
  const T* residual = nullptr;
};

template <typename T>
void normalize(T* y, const T* x, const T* gamma, const T* beta, const ChannelLayout& l, int64_t groups, int64_t g,
               int64_t c, double mean, double invstd, const Epilogue<T>& ep) {
  const double scale = static_cast<double>(gamma[c]) * invstd;
  const double shift = static_cast<double>(beta[c]) - mean * scale;
  if (!ep.relu) {
    for_channel(l, groups, g, c, [&](int64_t o) { y[o] = static_cast<T>(static_cast<double>(x[o]) * scale + shift); });
    return;
  }
  const T* r = ep.residual;
  for_channel(l, groups, g, c, [&](int64_t o) {
    const T z = static_cast<T>(static_cast<double>(x[o]) * scale + shift);
    const T v = r ? static_cast<T>(z + r[o]) : z;
    y[o] = v <= T(0) ? T(0) : v;  // NaN stays NaN, as relu
  });
}

template <typename T>
void forward_train(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x, const T* gamma,
                   const T* beta, const ChannelLayout& l, int64_t groups, GhostRunningStats running_stats,
                   double momentum, double eps, const Epilogue<T>& ep) {
  const double M = static_cast<double>(l.N / groups * l.HW);
  // Groups 0 .. movers - 1 move the running statistics, by the mean of their statistics.
  const int64_t movers = running_stats == GhostRunningStats::Average ? groups : 1;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    double moved_mean = 0.0, moved_var = 0.0;
    for (int64_t g = 0; g < groups; ++g) {
      double sum = 0.0;
      for_channel(l, groups, g, c, [&](int64_t o) { sum += static_cast<double>(x[o]); });
      const double mean = sum / M;
      double sq = 0.0;  // second pass: no cancellation from subtracting two large sums
      for_channel(l, groups, g, c, [&](int64_t o) {
        const double d = static_cast<double>(x[o]) - mean;
        sq += d * d;
      });
      const double var = sq / M, invstd = 1.0 / std::sqrt(var + eps);
      save_mean[g * l.C + c] = static_cast<T>(mean);
      save_invstd[g * l.C + c] = static_cast<T>(invstd);
      if (g < movers) {
        moved_mean += mean;
        moved_var += var * M / (M - 1.0);  // the running variance is unbiased
      }
      normalize(y, x, gamma, beta, l, groups, g, c, mean, invstd, ep);
    }
    if (running_mean)
      running_mean[c] = static_cast<T>((1.0 - momentum) * running_mean[c] + momentum * (moved_mean / movers));
    if (running_var)
      running_var[c] = static_cast<T>((1.0 - momentum) * running_var[c] + momentum * (moved_var / movers));
  }
}

template <typename T>
void forward_eval(T* y, T* save_invstd, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, const ChannelLayout& l, double eps, const Epilogue<T>& ep) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    save_invstd[c] = static_cast<T>(invstd);
    normalize(y, x, gamma, beta, l, 1, 0, c, static_cast<double>(running_mean[c]), invstd, ep);
  }
}

// y > 0 ? d : 0 (so a NaN or inf d where y <= 0 gives 0, as relu's backward) without a branch:
// with a branch the half-random relu mask cost the backward three times its time in mispredictions.
template <typename T>
inline T masked(T d, T y) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const Bits keep = Bits(0) - static_cast<Bits>(y > T(0));
  return std::bit_cast<T>(std::bit_cast<Bits>(d) & keep);
}

// kMask (the fused ops): dy counts only where mask_y, the forward's output, is > 0, and d_residual
// (may be null) receives that masked dy. Plain batchnorm2d: mask_y and d_residual unused.
template <bool kMask, typename T>
void backward(T* dx, T* d_residual, T* dgamma, T* dbeta, const T* dy_raw, const T* mask_y, const T* x,
              const T* gamma, const T* mean, const T* invstd, const ChannelLayout& l, int64_t groups, bool training) {
  const double M = static_cast<double>(l.N / groups * l.HW);
  const auto dy = [&](int64_t o) -> T {
    if constexpr (kMask) return masked(dy_raw[o], mask_y[o]);
    return dy_raw[o];
  };
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    double total_dy = 0.0, total_dy_xhat = 0.0;  // over the groups: gamma and beta are shared
    for (int64_t g = 0; g < groups; ++g) {
      const double mu = static_cast<double>(mean[g * l.C + c]), is = static_cast<double>(invstd[g * l.C + c]);
      double sum_dy = 0.0, sum_dy_xhat = 0.0;
      for_channel(l, groups, g, c, [&](int64_t o) {
        const T dz = dy(o);
        if constexpr (kMask)
          if (d_residual) d_residual[o] = dz;
        const double d = static_cast<double>(dz);
        sum_dy += d;
        sum_dy_xhat += d * (static_cast<double>(x[o]) - mu) * is;
      });
      total_dy += sum_dy;
      total_dy_xhat += sum_dy_xhat;
      if (!dx) continue;
      const double k = static_cast<double>(gamma[c]) * is;
      if (training) {
        const double mean_dy = sum_dy / M, mean_dy_xhat = sum_dy_xhat / M;
        for_channel(l, groups, g, c, [&](int64_t o) {
          const double xhat = (static_cast<double>(x[o]) - mu) * is;
          dx[o] = static_cast<T>(k * (static_cast<double>(dy(o)) - mean_dy - xhat * mean_dy_xhat));
        });
      } else {
        for_channel(l, groups, g, c, [&](int64_t o) { dx[o] = static_cast<T>(k * static_cast<double>(dy(o))); });
      }
    }
    if (dbeta) dbeta[c] = static_cast<T>(total_dy);
    if (dgamma) dgamma[c] = static_cast<T>(total_dy_xhat);
  }
}

}  // namespace

template <typename T>
void batchnorm2d_forward_train_cpu(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var, const T* x,
                                   const T* gamma, const T* beta, ChannelLayout l, int64_t groups,
                                   GhostRunningStats running_stats, double momentum, double eps) {
  forward_train(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, l, groups, running_stats,
                momentum, eps, Epilogue<T>{});
}

template <typename T>
void batchnorm2d_forward_eval_cpu(T* y, T* save_invstd, const T* x, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, ChannelLayout l, double eps) {
  forward_eval(y, save_invstd, x, gamma, beta, running_mean, running_var, l, eps, Epilogue<T>{});
}

template <typename T>
void batchnorm2d_backward_cpu(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                              const T* invstd, ChannelLayout l, int64_t groups, bool training) {
  backward<false, T>(dx, nullptr, dgamma, dbeta, dy, nullptr, x, gamma, mean, invstd, l, groups, training);
}

template <typename T>
void batchnorm2d_relu_forward_train_cpu(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                                        const T* x, const T* residual, const T* gamma, const T* beta,
                                        ChannelLayout l, int64_t groups, GhostRunningStats running_stats,
                                        double momentum, double eps) {
  forward_train(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, l, groups, running_stats,
                momentum, eps, Epilogue<T>{true, residual});
}

template <typename T>
void batchnorm2d_relu_forward_eval_cpu(T* y, T* save_invstd, const T* x, const T* residual, const T* gamma,
                                       const T* beta, const T* running_mean, const T* running_var, ChannelLayout l,
                                       double eps) {
  forward_eval(y, save_invstd, x, gamma, beta, running_mean, running_var, l, eps, Epilogue<T>{true, residual});
}

template <typename T>
void batchnorm2d_relu_backward_cpu(T* dx, T* d_residual, T* dgamma, T* dbeta, const T* dy, const T* y, const T* x,
                                   const T* gamma, const T* mean, const T* invstd, ChannelLayout l, int64_t groups,
                                   bool training) {
  backward<true, T>(dx, d_residual, dgamma, dbeta, dy, y, x, gamma, mean, invstd, l, groups, training);
}

#define ENGINE_INSTANTIATE_BATCHNORM2D_CPU(T)                                                                 \
  template void batchnorm2d_forward_train_cpu<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,           \
                                                 ChannelLayout, int64_t, GhostRunningStats, double, double); \
  template void batchnorm2d_forward_eval_cpu<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                                                ChannelLayout, double);                                     \
  template void batchnorm2d_backward_cpu<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                                            ChannelLayout, int64_t, bool);                                  \
  template void batchnorm2d_relu_forward_train_cpu<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,      \
                                                      const T*, ChannelLayout, int64_t, GhostRunningStats,   \
                                                      double, double);                                       \
  template void batchnorm2d_relu_forward_eval_cpu<T>(T*, T*, const T*, const T*, const T*, const T*,         \
                                                     const T*, const T*, ChannelLayout, double);              \
  template void batchnorm2d_relu_backward_cpu<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                                 const T*, const T*, ChannelLayout, int64_t, bool);
ENGINE_INSTANTIATE_BATCHNORM2D_CPU(float)
ENGINE_INSTANTIATE_BATCHNORM2D_CPU(double)
#undef ENGINE_INSTANTIATE_BATCHNORM2D_CPU

}  // namespace engine
