// lars_step_cpu.cpp - the reference LARS step: the three passes of lars_step.h over the plan's
// chunks (norm partial sums, scaled learning rates, update), rounding as lars_step_scalars.h.
#include <cstring>
#include <vector>

#include "ops/lars_step.h"
#include "ops/lars_step_scalars.h"

namespace engine {

namespace {

// Pass 1 for one chunk of an adapted segment: sums of w^2 and g^2 in double. Element i of the
// chunk goes to lane (i - begin) % 8, the tail of fewer than 8 elements to lane 0, and the lanes
// are added pairwise at the end: a fixed order, so the result does not depend on threads, and 8
// independent additions per group of 8 elements instead of one chain whose latency would bound
// the whole pass. The lanes are two vectors of 4 doubles (GCC's and Clang's vector extensions),
// which the compiler turns into a few vector instructions per group. The squares of f32 values are
// exact in double; each addition rounds once (-ffp-contract=off: nothing is fused), as on CUDA.
using Double4 = double __attribute__((vector_size(4 * sizeof(double))));
template <typename T>
struct Vec4Of;
template <>
struct Vec4Of<float> {
  using type = float __attribute__((vector_size(4 * sizeof(float))));
};
template <>
struct Vec4Of<double> {
  using type = Double4;
};
template <typename T>
using Vec4 = typename Vec4Of<T>::type;

template <typename T>
inline void chunk_sums(const T* params, const T* grads, const LarsChunk& c, T weight_decay, double* out) {
  Double4 w2[2] = {}, g2[2] = {};
  int64_t i = c.begin;
  for (; i + 8 <= c.end; i += 8) {
    for (int half = 0; half < 2; ++half) {
      Vec4<T> w, grad, g;
      std::memcpy(&w, params + i + 4 * half, sizeof w);
      std::memcpy(&grad, grads + i + 4 * half, sizeof grad);
      for (int k = 0; k < 4; ++k) g[k] = lars_decayed_grad(w[k], grad[k], weight_decay);
      const Double4 wd = __builtin_convertvector(w, Double4), gd = __builtin_convertvector(g, Double4);
      w2[half] += wd * wd;
      g2[half] += gd * gd;
    }
  }
  for (; i < c.end; ++i) {
    const double w = params[i];
    const double g = lars_decayed_grad(params[i], grads[i], weight_decay);
    w2[0][0] += w * w;
    g2[0][0] += g * g;
  }
  // ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
  auto lane_sum = [](const Double4* l) {
    return ((l[0][0] + l[0][1]) + (l[0][2] + l[0][3])) + ((l[1][0] + l[1][1]) + (l[1][2] + l[1][3]));
  };
  out[0] = lane_sum(w2);
  out[1] = lane_sum(g2);
}

// Pass 3 for one chunk.
template <typename T>
inline void chunk_update(T* params, T* momentum, const T* grads, const LarsChunk& c, bool adapted, T scaled_lr,
                         const LarsScalars<T>& s) {
  for (int64_t i = c.begin; i < c.end; ++i) {
    const T w = params[i];
    const T g = adapted ? lars_decayed_grad(w, grads[i], s.weight_decay) : grads[i];
    const T v = lars_momentum(momentum[i], g, scaled_lr, s.momentum);
    momentum[i] = v;
    params[i] = w - v;
  }
}

template <typename T>
using SumsFn = void (*)(const T*, const T*, const LarsChunk&, T, double*);
template <typename T>
using UpdateFn = void (*)(T*, T*, const T*, const LarsChunk&, bool, T, const LarsScalars<T>&);

#if defined(__x86_64__) && defined(__GNUC__)
// Copies compiled for CPUs with AVX2 and FMA, chosen at run time as in sgd_step_cpu.cpp: std::fma
// becomes one instruction instead of a library call (the same correctly rounded bits), and pass
// 1's lanes fill 256-bit registers. Same arithmetic, same order: the same results.
template <typename T>
__attribute__((target("avx2,fma"))) void chunk_sums_avx2(const T* params, const T* grads, const LarsChunk& c,
                                                          T weight_decay, double* out) {
  chunk_sums<T>(params, grads, c, weight_decay, out);
}
template <typename T>
__attribute__((target("avx2,fma"))) void chunk_update_avx2(T* params, T* momentum, const T* grads,
                                                            const LarsChunk& c, bool adapted, T scaled_lr,
                                                            const LarsScalars<T>& s) {
  chunk_update<T>(params, momentum, grads, c, adapted, scaled_lr, s);
}

inline bool has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}
template <typename T>
SumsFn<T> fastest_sums_fn() {
  return has_avx2_fma() ? chunk_sums_avx2<T> : chunk_sums<T>;
}
template <typename T>
UpdateFn<T> fastest_update_fn() {
  return has_avx2_fma() ? chunk_update_avx2<T> : chunk_update<T>;
}
#else
template <typename T>
SumsFn<T> fastest_sums_fn() {
  return chunk_sums<T>;
}
template <typename T>
UpdateFn<T> fastest_update_fn() {
  return chunk_update<T>;
}
#endif

}  // namespace

template <typename T>
void lars_step_cpu(T* params, T* momentum, const T* grads, const LarsChunk* chunks, int64_t num_chunks,
                   const LarsSegmentChunks* segments, int64_t num_segments, const LarsStepOptions& opt,
                   const double* lr) {
  const LarsScalars<T> s(opt);
  const SumsFn<T> sums = fastest_sums_fn<T>();
  const UpdateFn<T> update = fastest_update_fn<T>();
  // Threads only when there is more than one chunk's worth of work to share.
  const bool threaded = num_chunks > 1;

  // Pass 1: partial sums (w^2, g^2) of every chunk of an adapted segment.
  std::vector<double> partials(static_cast<size_t>(2 * num_chunks), 0.0);
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t c = 0; c < num_chunks; ++c)
    if (segments[chunks[c].segment].adapted) sums(params, grads, chunks[c], s.weight_decay, &partials[2 * c]);

  // Pass 2: each segment's sums in chunk order, then its lr * trust rounded to T.
  std::vector<T> scaled_lr(static_cast<size_t>(num_segments));
  for (int64_t seg = 0; seg < num_segments; ++seg) {
    double sum_w2 = 0.0, sum_g2 = 0.0;
    for (int64_t c = segments[seg].first_chunk; c < segments[seg].end_chunk; ++c) {
      sum_w2 += partials[2 * c];
      sum_g2 += partials[2 * c + 1];
    }
    scaled_lr[seg] = static_cast<T>(lars_scaled_lr(sum_w2, sum_g2, segments[seg].adapted != 0, *lr, opt.eta));
  }

  // Pass 3: the update, each chunk with its segment's scaled learning rate.
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t c = 0; c < num_chunks; ++c) {
    const int64_t seg = chunks[c].segment;
    update(params, momentum, grads, chunks[c], segments[seg].adapted != 0, scaled_lr[seg], s);
  }
}

template void lars_step_cpu<float>(float*, float*, const float*, const LarsChunk*, int64_t, const LarsSegmentChunks*,
                                   int64_t, const LarsStepOptions&, const double*);
template void lars_step_cpu<double>(double*, double*, const double*, const LarsChunk*, int64_t,
                                    const LarsSegmentChunks*, int64_t, const LarsStepOptions&, const double*);

}  // namespace engine
