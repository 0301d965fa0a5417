// lars_step.h - one step of SimCLR's LARS optimizer over flat buffers: every parameter tensor of a
// model is a segment of one flat buffer, its gradient the same segment of a second and its
// momentum of a third, so a whole ResNet-50 is updated by three launches whatever its 161 tensors.
//
// The rule (the momentum form of the LARS optimizer SimCLR's official TensorFlow code trains
// with). Per segment S, with w, grad, v its parameters, gradient and momentum, lr the learning
// rate, mu the momentum, wd the weight decay and eta the trust coefficient:
//   adapted S:   g = grad + wd * w
//                trust = eta * ||w|| / ||g||    when ||w|| > 0 and ||g|| > 0, else 1
//   excluded S:  g = grad,  trust = 1           (no weight decay and no adaptation: a plain
//                                                momentum-SGD step; SimCLR excludes BatchNorm's
//                                                parameters and biases this way)
//   v = mu * v + (lr * trust) * g
//   w = w - v
// ||.|| is the L2 norm over the segment. The trust ratio makes each tensor's step proportional to
// its own size, ||v|| ~ lr * eta * ||w||, whatever the scale of its gradient: large batches can
// then train with one learning rate for all layers. The learning rate sits inside the momentum
// (v accumulates lr-scaled steps), unlike torch.optim.SGD's buffer form (sgd_step.h), so a change
// of lr acts from the next step on without rescaling the history. v starts at 0, so the first
// step is v = lr * trust * g: no first-step flag is needed.
//
// Rounding. wd, mu are rounded to the element type T once. Each segment's norms are sums of
// squares accumulated in double (for f32 each square is exact in double; for f64 the double
// sums are the usual ones), and its scaled learning rate lr * trust is computed in double from
// them (sqrt, eta * ||w|| / ||g||, times lr, each rounded once) and then rounded to T once. Per
// element: g = fma(w, wd, grad); v = fma(g, lr * trust, round(v * mu)); w = round(w - v). The CPU
// and CUDA apply exactly these per-element roundings (std::fma / fma_rn, -ffp-contract=off).
//
// CPU against CUDA. The element updates are the same, but the norms' sums are added in different
// orders (the CPU sums a chunk in 8 interleaved lanes added pairwise; a CUDA block as 256 strided
// partial sums combined by a shuffle tree), so the double sums may differ in their last bits: a
// relative difference of at most about n * 2^-53 (2.6e-10 for the 2.36M elements of ResNet-50's
// largest tensor, typically far less). That reaches the T-rounded scaled learning rate only when
// lr * trust lies that close to a rounding boundary of T, and then moves it by one unit in the
// last place.
// So for f32 each v and w is either the same bits or differs by about 2^-24 of the step's
// lr * trust * g term, plus one rounding of v and of w; for f64 the scaled learning rates differ by
// a few ulps, and so do v and w. Tests allow, per segment, 16 units of the type's roundoff
// (2^-24, 2^-53) of the segment's largest value (tests/ops/test_lars_step.cpp): a value where
// mu * v and the new step nearly cancel keeps the rounding of its larger operands. The conformance
// cases, whose values are at most about 1, take the same as atol 1e-6 (with rtol 1e-6). Each
// device on its own is deterministic: the same inputs give the same bits on every run (fixed
// chunks, fixed summation order, no atomics).
//
// Design (llm.c style: one plan, three plain kernels). A LarsPlan checks the segments and cuts
// each into chunks of at most kDefaultChunk elements (a chunk never straddles two segments), once,
// on the host; for a CUDA plan the chunk table (segment, begin, end) and the segment table (first
// chunk, end chunk, adapted) are copied to the device then, so a step never copies anything to or
// from the host. One step, in stream order:
//   1. lars_norms_kernel: one block per chunk of an adapted segment writes the chunk's sums of
//      w^2 and g^2 (g with weight decay) in double to a scratch table (2 doubles per chunk);
//   2. lars_scaled_lr_kernel: one block per segment adds its chunks' partial sums in a fixed order
//      and writes the segment's lr * trust, rounded to T (lr for an excluded segment), reading lr
//      from device memory (below);
//   3. lars_update_kernel: one block per chunk updates v and w with its segment's scaled lr.
// The CPU reference follows the same three passes over the same chunks (passes 1 and 3 spread
// over OpenMP threads), so it too is deterministic for any number of threads.
// Cost, per element of an adapted segment: pass 1 reads w and grad, pass 3 reads w, grad and v and
// writes w and v: 7 accesses, 28 bytes for f32 (sgd_step moves 20), plus 16 bytes of partial sums
// per chunk (0.2% at 8192 elements a chunk). Excluded segments skip pass 1. The norms need the
// whole segment before any element can be updated, so a single pass is impossible without keeping
// the segment in cache; ResNet-50's 94 MB of f32 parameters do not fit, hence the two reads.
// Chunks of 8192 cut ResNet-50's trunk (23.5M elements, 159 tensors) into 2972 chunks: as many
// blocks of 256 threads for passes 1 and 3 (in pass 1 the 106 of excluded tensors return at
// once), 32 elements per thread, and at most 288 partial sums for a block of pass 2 to add.
//
// The learning rate is read from a one-element f64 in the buffers' memory, not passed by value, as
// sgd_step's (sgd_step.h): a step captured in a CUDA graph and replayed then follows the schedule
// written into that element before each replay (nn::Optimizer::set_lr). Pass 2 reads it.
//
// No autograd: params and momentum are written in place, as the other optimizer ops. Elements of
// the buffers outside every segment (the padding of a flat layout) are neither read nor written.
// Types f32 and f64.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace engine {

// What stays fixed through training; the learning rate is read from memory (see above).
struct LarsStepOptions {
  double momentum = 0.9;
  double weight_decay = 1e-6;
  double eta = 0.001;
};

// One parameter tensor's place in the flat buffers: elements [offset, offset + length).
struct LarsSegment {
  int64_t offset = 0;
  int64_t length = 0;
  bool adapted = true;  // weight decay and trust ratio; false: excluded (see the rule above)
};

// The tables the kernels read, three int64 each so that a CUDA plan stores them as i64 tensors.
struct LarsChunk {
  int64_t segment;     // index into the plan's segments
  int64_t begin, end;  // elements [begin, end) of the flat buffers
};
struct LarsSegmentChunks {
  int64_t first_chunk, end_chunk;  // the segment's chunks are [first_chunk, end_chunk)
  int64_t adapted;                 // 1 or 0
};

// The segments of a flat buffer of `numel` elements, checked and cut into chunks, for buffers on
// `device`. Build it once (nn::Lars builds it with the optimizer) and pass it to every step.
// Segments may come in any order and leave gaps; they must lie inside [0, numel) and must not
// overlap (an element updated twice would see its own update in the second norm). A segment of
// length 0 is allowed and updates nothing. `chunk` (elements per chunk, > 0) is the summation and
// work unit; the default suits a GPU, and tests lower it to get many chunks out of small buffers.
class LarsPlan {
 public:
  static constexpr int64_t kDefaultChunk = 8192;

  explicit LarsPlan(std::vector<LarsSegment> segments, int64_t numel, Device device, int64_t chunk = kDefaultChunk);

  const std::vector<LarsSegment>& segments() const { return segments_; }
  int64_t numel() const { return numel_; }
  Device device() const { return device_; }
  int64_t chunk() const { return chunk_; }
  const std::vector<LarsChunk>& chunks() const { return chunks_; }
  const std::vector<LarsSegmentChunks>& segment_chunks() const { return segment_chunks_; }
  // For a CUDA plan: the two tables on the device, i64 of shapes (chunks, 3) and (segments, 3);
  // undefined for a CPU plan.
  const Tensor& device_chunks() const { return device_chunks_; }
  const Tensor& device_segment_chunks() const { return device_segment_chunks_; }

 private:
  std::vector<LarsSegment> segments_;
  int64_t numel_, chunk_;
  Device device_;
  std::vector<LarsChunk> chunks_;
  std::vector<LarsSegmentChunks> segment_chunks_;
  Tensor device_chunks_, device_segment_chunks_;
};

// ---- raw level: the plan's tables and the learning rate `lr` (one double) on the host for the CPU,
// on the device for CUDA ----
template <typename T>
void lars_step_cpu(T* params, T* momentum, const T* grads, const LarsChunk* chunks, int64_t num_chunks,
                   const LarsSegmentChunks* segments, int64_t num_segments, const LarsStepOptions& opt,
                   const double* lr);
template <typename T>
void lars_step_cuda(int device, T* params, T* momentum, const T* grads, const LarsChunk* chunks, int64_t num_chunks,
                    const LarsSegmentChunks* segments, int64_t num_segments, const LarsStepOptions& opt,
                    const double* lr);

// ---- Tensor level ----
// params, grads and momentum: one shape, dtype (f32 or f64) and device, `plan.numel()` elements
// and the plan's device; params and momentum contiguous and distinct (both are written in place);
// grads may be strided. momentum holds v (zeros before the first step). momentum, weight_decay and
// eta must be >= 0. lr: a one-element f64 tensor on the buffers' device, in memory of its own; its
// value must be finite and >= 0, which is not checked here (reading it would make the host wait
// for the device): nn::Optimizer::set_lr checks it on the host before writing it.
void lars_step(Tensor& params, const Tensor& grads, Tensor& momentum, const LarsPlan& plan,
               const LarsStepOptions& opt, const Tensor& lr);
// The same with a plan made for this call from `segments` (tests and one-off updates; a training
// loop keeps its plan).
void lars_step(Tensor& params, const Tensor& grads, Tensor& momentum, const std::vector<LarsSegment>& segments,
               const LarsStepOptions& opt, const Tensor& lr);

}  // namespace engine
