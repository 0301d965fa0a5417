// lars_step_cuda.cu - SimCLR's LARS step as three kernels over the plan's chunk table (see
// lars_step.h for the design and its cost), rounding per element exactly as the CPU reference.
// Every sum has a fixed order (a thread's strided share of a chunk, then the shuffle tree of
// cuda::block_sum; a segment's chunks likewise), so a step gives the same bits on every run.
#include <algorithm>

#include "engine/allocator.h"
#include "engine/cuda_common.cuh"
#include "engine/rounding.h"
#include "ops/lars_step.h"
#include "ops/lars_step_scalars.h"

namespace engine {

namespace {

constexpr int kWarps = cuda::kBlock / cuda::kWarpSize;
constexpr int64_t kMaxBlocks = 65535;  // more chunks or segments than this: each block takes several in turn

unsigned blocks_for(int64_t items) { return static_cast<unsigned>(std::clamp<int64_t>(items, 1, kMaxBlocks)); }

// Pass 1: one block per chunk of an adapted segment; partials[2c], partials[2c + 1] = the chunk's
// sums of w^2 and g^2 (g with weight decay), in double.
template <typename T>
__global__ void __launch_bounds__(cuda::kBlock)
    lars_norms_kernel(double* partials, const T* params, const T* grads, const LarsChunk* chunks, int64_t num_chunks,
                      const LarsSegmentChunks* segments, T weight_decay) {
  __shared__ double scratch[kWarps];
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const LarsChunk chunk = chunks[c];
    // Excluded: skipped by the whole block at once, so no thread misses a barrier the others wait at.
    if (!segments[chunk.segment].adapted) continue;
    double sum_w2 = 0.0, sum_g2 = 0.0;
    for (int64_t i = chunk.begin + threadIdx.x; i < chunk.end; i += blockDim.x) {
      const T w = params[i];
      const double wd = static_cast<double>(w);
      const double gd = static_cast<double>(lars_decayed_grad(w, grads[i], weight_decay));
      sum_w2 = add_rn(sum_w2, mul_rn(wd, wd));
      sum_g2 = add_rn(sum_g2, mul_rn(gd, gd));
    }
    sum_w2 = cuda::block_sum(sum_w2, scratch);
    sum_g2 = cuda::block_sum(sum_g2, scratch);
    if (threadIdx.x == 0) {
      partials[2 * c] = sum_w2;
      partials[2 * c + 1] = sum_g2;
    }
  }
}

// Pass 2: one block per segment adds its chunks' partial sums (thread t takes chunks t, t + 256,
// ..., then the block's tree) and writes lr * trust rounded to T; lr is read from device memory
// when the kernel runs (lars_step.h).
template <typename T>
__global__ void __launch_bounds__(cuda::kBlock)
    lars_scaled_lr_kernel(T* scaled_lr, const double* partials, const LarsSegmentChunks* segments,
                          int64_t num_segments, const double* lr_in_memory, double eta) {
  __shared__ double scratch[kWarps];
  const double lr = *lr_in_memory;
  for (int64_t s = blockIdx.x; s < num_segments; s += gridDim.x) {
    const LarsSegmentChunks seg = segments[s];
    double sum_w2 = 0.0, sum_g2 = 0.0;
    if (seg.adapted) {
      for (int64_t c = seg.first_chunk + threadIdx.x; c < seg.end_chunk; c += blockDim.x) {
        sum_w2 = add_rn(sum_w2, partials[2 * c]);
        sum_g2 = add_rn(sum_g2, partials[2 * c + 1]);
      }
    }
    sum_w2 = cuda::block_sum(sum_w2, scratch);
    sum_g2 = cuda::block_sum(sum_g2, scratch);
    if (threadIdx.x == 0) scaled_lr[s] = static_cast<T>(lars_scaled_lr(sum_w2, sum_g2, seg.adapted != 0, lr, eta));
  }
}

// Pass 3: one block per chunk updates v and w with its segment's scaled learning rate.
template <typename T>
__global__ void __launch_bounds__(cuda::kBlock)
    lars_update_kernel(T* params, T* momentum, const T* grads, const T* scaled_lr, const LarsChunk* chunks,
                       int64_t num_chunks, const LarsSegmentChunks* segments, T weight_decay, T mu) {
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const LarsChunk chunk = chunks[c];
    const bool adapted = segments[chunk.segment].adapted != 0;
    const T lr_s = scaled_lr[chunk.segment];
    for (int64_t i = chunk.begin + threadIdx.x; i < chunk.end; i += blockDim.x) {
      const T w = params[i];
      const T g = adapted ? lars_decayed_grad(w, grads[i], weight_decay) : grads[i];
      const T v = lars_momentum(momentum[i], g, lr_s, mu);
      momentum[i] = v;
      params[i] = add_rn(w, -v);
    }
  }
}

}  // namespace

template <typename T>
void lars_step_cuda(int device, T* params, T* momentum, const T* grads, const LarsChunk* chunks, int64_t num_chunks,
                    const LarsSegmentChunks* segments, int64_t num_segments, const LarsStepOptions& opt,
                    const double* lr) {
  if (num_chunks == 0) return;
  const LarsScalars<T> s(opt);
  cudaStream_t stream = cuda::stream(device);
  CudaScratch<double> partials(device, static_cast<size_t>(2 * num_chunks));
  CudaScratch<T> scaled_lr(device, static_cast<size_t>(num_segments));
  cuda::launch("lars_norms_kernel", lars_norms_kernel<T>, blocks_for(num_chunks), cuda::kBlock, 0, stream,
      partials.ptr, params, grads, chunks, num_chunks, segments, s.weight_decay);
  cuda::launch("lars_scaled_lr_kernel", lars_scaled_lr_kernel<T>, blocks_for(num_segments), cuda::kBlock, 0, stream,
      scaled_lr.ptr, partials.ptr, segments, num_segments, lr, opt.eta);
  cuda::launch("lars_update_kernel", lars_update_kernel<T>, blocks_for(num_chunks), cuda::kBlock, 0, stream,
      params, momentum, grads, scaled_lr.ptr, chunks, num_chunks, segments, s.weight_decay, s.momentum);
}

template void lars_step_cuda<float>(int, float*, float*, const float*, const LarsChunk*, int64_t,
                                    const LarsSegmentChunks*, int64_t, const LarsStepOptions&, const double*);
template void lars_step_cuda<double>(int, double*, double*, const double*, const LarsChunk*, int64_t,
                                     const LarsSegmentChunks*, int64_t, const LarsStepOptions&, const double*);

}  // namespace engine
