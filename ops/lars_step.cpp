// lars_step.cpp - the LARS plan (segments checked and cut into chunks), and the checks and dispatch
// of one step (no autograd).
#include "ops/lars_step.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include "ops/sgd_step.h"  // check_learning_rate_tensor

namespace engine {

static_assert(sizeof(LarsChunk) == 3 * sizeof(int64_t) && sizeof(LarsSegmentChunks) == 3 * sizeof(int64_t),
              "the plan's tables are copied to the device as (rows, 3) i64 tensors");

namespace {

void check_segments(const std::vector<LarsSegment>& segments, int64_t numel) {
  for (size_t s = 0; s < segments.size(); ++s) {
    const LarsSegment& seg = segments[s];
    ENGINE_CHECK(seg.offset >= 0 && seg.length >= 0,
                 "lars_step: segment {} has offset {} and length {}; both must be >= 0", s, seg.offset, seg.length);
    ENGINE_CHECK(seg.length <= numel - seg.offset,
                 "lars_step: segment {} covers elements [{}, {}), past the end of the {}-element buffers; every "
                 "segment must lie inside [0, {})",
                 s, seg.offset, seg.offset + seg.length, numel, numel);
  }
  // Sorted by offset, each non-empty segment must end where or before the next one starts.
  std::vector<size_t> order(segments.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::erase_if(order, [&](size_t s) { return segments[s].length == 0; });
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return segments[a].offset < segments[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const LarsSegment &a = segments[order[k - 1]], &b = segments[order[k]];
    ENGINE_CHECK(a.offset + a.length <= b.offset,
                 "lars_step: segments {} [{}, {}) and {} [{}, {}) overlap; each element must belong to at most one "
                 "segment (one per parameter tensor)",
                 order[k - 1], a.offset, a.offset + a.length, order[k], b.offset, b.offset + b.length);
  }
}

void check_options(const LarsStepOptions& opt) {
  ENGINE_CHECK(opt.momentum >= 0.0, "lars_step: momentum must be >= 0, found {}", opt.momentum);
  ENGINE_CHECK(opt.weight_decay >= 0.0, "lars_step: weight_decay must be >= 0, found {}", opt.weight_decay);
  ENGINE_CHECK(opt.eta >= 0.0, "lars_step: the trust coefficient eta must be >= 0, found {}", opt.eta);
}

// A tensor that lars_step writes in place: contiguous, and allowed to be written without autograd.
void check_written(const Tensor& t, const char* arg) {
  check_inplace_allowed(t, "lars_step");
  ENGINE_CHECK(t.is_contiguous(),
               "lars_step: '{}' is updated in place and must be contiguous, found {} with strides {}; pass the "
               "flat buffers of Module::flatten_parameters() or contiguous tensors",
               arg, t.str(), shape_str(t.strides()));
}

// rows x 3 int64 values as an i64 tensor on `device`.
template <typename Row>
Tensor table_on(const std::vector<Row>& rows, Device device) {
  std::vector<int64_t> values(rows.size() * 3);
  if (!rows.empty()) std::memcpy(values.data(), rows.data(), values.size() * sizeof(int64_t));
  return Tensor::from_vector(values, {static_cast<int64_t>(rows.size()), 3}, device);
}

}  // namespace

LarsPlan::LarsPlan(std::vector<LarsSegment> segments, int64_t numel, Device device, int64_t chunk)
    : segments_(std::move(segments)), numel_(numel), chunk_(chunk), device_(device) {
  ENGINE_CHECK(numel >= 0, "LarsPlan: the buffers' element count must be >= 0, found {}", numel);
  ENGINE_CHECK(chunk > 0, "LarsPlan: the chunk size must be > 0 elements, found {}", chunk);
  check_segments(segments_, numel);
  segment_chunks_.reserve(segments_.size());
  for (size_t s = 0; s < segments_.size(); ++s) {
    const LarsSegment& seg = segments_[s];
    const int64_t first = static_cast<int64_t>(chunks_.size());
    for (int64_t begin = seg.offset; begin < seg.offset + seg.length; begin += chunk)
      chunks_.push_back({static_cast<int64_t>(s), begin, std::min(begin + chunk, seg.offset + seg.length)});
    segment_chunks_.push_back({first, static_cast<int64_t>(chunks_.size()), seg.adapted ? 1 : 0});
  }
  if (device.is_cuda()) {
    device_chunks_ = table_on(chunks_, device);
    device_segment_chunks_ = table_on(segment_chunks_, device);
  }
}

void lars_step(Tensor& params, const Tensor& grads, Tensor& momentum, const LarsPlan& plan,
               const LarsStepOptions& opt, const Tensor& lr) {
  check_defined(params, "lars_step", "params");
  check_defined(grads, "lars_step", "grads");
  check_defined(momentum, "lars_step", "momentum");
  check_options(opt);
  check_same_shape(params, grads, "lars_step");
  check_same_shape(params, momentum, "lars_step");
  check_same_dtype(params, grads, "lars_step");
  check_same_dtype(params, momentum, "lars_step");
  check_same_device(params, grads, "lars_step");
  check_same_device(params, momentum, "lars_step");
  check_written(params, "params");
  check_written(momentum, "momentum");
  ENGINE_CHECK(momentum.storage() != params.storage(),
               "lars_step: the momentum buffer {} shares its memory with the parameters {}; give it its own tensor",
               momentum.str(), params.str());
  ENGINE_CHECK(params.numel() == plan.numel(),
               "lars_step: the plan was made for buffers of {} elements, but params {} has {}; make the plan from "
               "this buffer's segments",
               plan.numel(), params.str(), params.numel());
  ENGINE_CHECK(params.device() == plan.device(),
               "lars_step: the plan was made for {}, but the buffers are on {}; make a plan for their device (a "
               "CUDA plan keeps its tables on the GPU)",
               plan.device().str(), params.device().str());
  check_learning_rate_tensor(lr, params, momentum, "lars_step");
  // The gradient is only read; a copy keeps it from aliasing what the step writes.
  Tensor g = grads.detach().contiguous();
  if (g.storage() == params.storage() || g.storage() == momentum.storage()) g = g.clone();
  const int64_t num_chunks = static_cast<int64_t>(plan.chunks().size());
  const int64_t num_segments = static_cast<int64_t>(plan.segments().size());
  dispatch_float(params.dtype(), "lars_step", [&]<typename T>() {
    if (params.device().is_cpu()) {
      lars_step_cpu<T>(params.data<T>(), momentum.data<T>(), g.data<T>(), plan.chunks().data(), num_chunks,
                       plan.segment_chunks().data(), num_segments, opt, lr.data<double>());
    } else {
      ENGINE_DISPATCH_CUDA(
          params.device(), "lars_step",
          lars_step_cuda<T>(params.device().index, params.data<T>(), momentum.data<T>(), g.data<T>(),
                            reinterpret_cast<const LarsChunk*>(plan.device_chunks().data<int64_t>()), num_chunks,
                            reinterpret_cast<const LarsSegmentChunks*>(plan.device_segment_chunks().data<int64_t>()),
                            num_segments, opt, lr.data<double>()));
    }
  });
}

void lars_step(Tensor& params, const Tensor& grads, Tensor& momentum, const std::vector<LarsSegment>& segments,
               const LarsStepOptions& opt, const Tensor& lr) {
  check_defined(params, "lars_step", "params");
  lars_step(params, grads, momentum, LarsPlan(segments, params.numel(), params.device()), opt, lr);
}

}  // namespace engine
