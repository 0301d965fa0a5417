// channel_reduce.cuh - per-(group, channel) sums over (N / groups, H*W) on CUDA, the reduction
// behind batchnorm2d's statistics and backward (ghost groups summed apart) and the conv bias
// gradient (one group).
//
// Two passes, sized for a GPU of ~132 multiprocessors whatever the shape (channel_reduce_plan.h):
//   1. partials: a (rows x splits) grid; each block sums its share of a row (NCHW) or of a tile of
//      32 channels (NHWC) and writes one partial sum per (split, group, channel).
//   2. combine: the op's own small kernel adds a row's partials with combine_partials, always in
//      split order: the result does not depend on which block finished first (no float atomics),
//      so a run repeats bit for bit.
// Why one block per channel was not enough: layer1's 64 channels made 64 blocks on 132
// multiprocessors, with 800k values each.
//
// Sums are in double, as the CPU reference does. Why not float: the sum of dy that batchnorm2d's
// backward needs cancels (its terms are far larger than the sum), and in float it came out about
// 1% off on the quickstart's data, so emulated CUDA training left the CPU run by a factor of ten
// per step; in double it agrees to 5e-6. The kernels are memory-bound, so the double adds cost
// nothing a GPU would notice.
//
// Index math: nothing is divided per element. A thread divides once, where it starts
// (DivWalker), and from then on moves by a fixed step with adds and one compare.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "engine/allocator.h"
#include "engine/cuda_check.h"
#include "engine/cuda_common.cuh"
#include "ops/channel_layout.h"
#include "ops/channel_reduce_plan.h"

namespace engine::cuda {

// What a per-channel term returns: K floats to be summed.
template <int K>
struct ChannelTerms {
  float v[K];
  __device__ float operator[](int k) const { return v[k]; }
};

// A fixed step through j = 0, 1, ... seen as (q, r) = (j / d, j % d), whose element lies at
// offset q * q_stride + r: step / d and step % d once, on the host.
struct DivStep {
  int64_t d, q_stride;
  int64_t dq, dr, offset_step;
  static DivStep make(int64_t step, int64_t d, int64_t q_stride) {
    return {d, q_stride, step / d, step % d, step / d * q_stride + step % d};
  }
};

// Position j as (q, r, offset); advance() adds the step: r wraps at most once (dr < d).
struct DivWalker {
  int64_t q, r, offset;
  __device__ DivWalker(int64_t j, const DivStep& s) : q(j / s.d), r(j % s.d), offset(q * s.q_stride + r) {}
  __device__ void advance(const DivStep& s) {
    q += s.dq;
    r += s.dr;
    offset += s.offset_step;
    if (r >= s.d) {
      r -= s.d;
      ++q;
      offset += s.q_stride - s.d;
    }
  }
};

// A Term gives, for a row (group g, channel c: row = g C + c), term.row(row): a callable from an
// element's offset to its K values. The row's constants (a mean, an invstd) are read once.

// Partials, layout [K][splits][rows]. NCHW: block (row, split); the row's N/groups * HW values
// j = n HW + i lie at base + n C HW + i, and the split takes j in [M s / S, M (s + 1) / S).
template <int K, typename Term>
__global__ void channel_partials_rows_kernel(double* partials, ChannelLayout l, int64_t groups, DivStep step,
                                             Term term) {
  __shared__ double scratch[kBlock / kWarpSize];
  const int64_t row = blockIdx.x, split = blockIdx.y, splits = gridDim.y, rows = gridDim.x;
  const int64_t images = l.N / groups, g = row / l.C, c = row % l.C;  // per block, not per element
  const int64_t M = images * l.HW, end = M * (split + 1) / splits;
  const int64_t base = (g * images * l.C + c) * l.HW;
  const auto at = term.row(row);
  double acc[K] = {};
  int64_t j = M * split / splits + threadIdx.x;
  if (j < end) {
    DivWalker w(j, step);
    for (; j < end; j += blockDim.x, w.advance(step)) {
      const auto v = at(base + w.offset);
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const double total = block_sum(acc[k], scratch);
    if (threadIdx.x == 0) partials[(k * splits + split) * rows + row] = total;
  }
}

// NHWC: block (group x channel tile, split). Lane tx of the block's 8 warps owns channel
// tile * 32 + tx; warp ty visits pixels p = p0 + ty, p0 + ty + 8, ... of the split's range of the
// group's P = N/groups * HW pixels, at offset (g P + p) C + c. The 8 warps' sums meet in shared
// memory and warp 0 adds them in warp order.
template <int K, typename Term>
__global__ void channel_partials_tiles_kernel(double* partials, ChannelLayout l, int64_t groups, Term term) {
  constexpr int kTile = ChannelReducePlan::kTileChannels, kLanes = kBlock / kTile;
  __shared__ double warp_sums[K][kLanes][kTile];
  const int64_t tiles = (l.C + kTile - 1) / kTile, splits = gridDim.y, split = blockIdx.y;
  const int64_t g = blockIdx.x / tiles, c = blockIdx.x % tiles * kTile + threadIdx.x % kTile;
  const int ty = threadIdx.x / kTile;
  const int64_t P = l.N / groups * l.HW, end = P * (split + 1) / splits;
  double acc[K] = {};
  if (c < l.C) {
    const auto at = term.row(g * l.C + c);
    int64_t p = P * split / splits + ty, o = (g * P + p) * l.C + c;
    for (; p < end; p += kLanes, o += kLanes * l.C) {
      const auto v = at(o);
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) warp_sums[k][ty][threadIdx.x % kTile] = acc[k];
  __syncthreads();
  if (ty == 0 && c < l.C) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double total = 0.0;
      for (int lane = 0; lane < kLanes; ++lane) total += warp_sums[k][lane][threadIdx.x];
      partials[(k * splits + split) * groups * l.C + g * l.C + c] = total;
    }
  }
}

// Sum k of row `row`: its partials added in split order (the combine passes call this).
__device__ inline double combine_partials(const double* partials, const ChannelReducePlan& plan, int k,
                                          int64_t row) {
  double total = 0.0;
  for (int64_t s = 0; s < plan.splits; ++s) total += partials[(k * plan.splits + s) * plan.rows + row];
  return total;
}

// Multiprocessors of `device`, asked once (cudaGetDeviceProperties is slow) and kept.
inline int64_t multiprocessor_count(int device) {
  constexpr int kDevices = 64;
  static std::atomic<int> counts[kDevices];  // 0: not asked yet; racing first calls store the same value
  ENGINE_CHECK(device >= 0 && device < kDevices, "multiprocessor_count: device {} out of range 0..{}", device,
               kDevices - 1);
  if (counts[device] == 0) {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    counts[device] = prop.multiProcessorCount;
  }
  return counts[device];
}

// The partial sums of `term` over `l` in `groups` ghost groups, K values per element: the plan to
// size the partials buffer with (K * splits * rows doubles) and to combine them by.
inline ChannelReducePlan channel_reduce_plan(int device, const ChannelLayout& l, int64_t groups) {
  return plan_channel_reduce(l, groups, multiprocessor_count(device));
}

template <int K, typename Term>
void launch_channel_partials(LaunchSite site, double* partials, const ChannelReducePlan& plan, const ChannelLayout& l,
                             int64_t groups, Term term, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(plan.row_blocks), static_cast<unsigned>(plan.splits));
  if (plan.tiled) {
    launch(site, channel_partials_tiles_kernel<K, Term>, grid, kBlock, 0, stream, partials, l, groups, term);
  } else {
    launch(site, channel_partials_rows_kernel<K, Term>, grid, kBlock, 0, stream, partials, l, groups,
           DivStep::make(kBlock, std::max<int64_t>(l.HW, 1), l.C * l.HW), term);  // HW 0: no values to walk
  }
}

// The activation types the per-channel CUDA ops store: f32, or bf16 computed in f32.
template <typename Fn>
void dispatch_activation(DType dtype, const char* op, Fn&& fn) {
  ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16, "{} on CUDA takes f32 or bf16, found {}", op,
               dtype_name(dtype));
  if (dtype == DType::f32)
    fn.template operator()<float>();
  else
    fn.template operator()<bf16>();
}

template <typename T>
__device__ inline float load_float(const T* p, int64_t i) {
  return convert_element<float>(p[i]);
}

}  // namespace engine::cuda
