// data_parallel.cpp - see data_parallel.h.
#include "layers/data_parallel.h"

#include "engine/autograd.h"
#include "engine/check.h"

namespace engine::nn {

DataParallelGradients::DataParallelGradients(Module& model, Collectives& world, int64_t bucket_bytes)
    : model_(model), world_(world) {
  ENGINE_CHECK(model.is_flat(), "DataParallelGradients: the model must be flat (flatten_parameters()) first");
  ENGINE_CHECK(bucket_bytes > 0, "DataParallelGradients: the bucket size must be positive, found {}", bucket_bytes);
  if (world.world_size() == 1) return;
  const Tensor& flat = model.flat_parameters();
  const int64_t bucket_elements = std::max<int64_t>(1, bucket_bytes / dtype_size(flat.dtype()));
  // Reverse parameter order: the order in which the backward finishes them.
  NamedTensors parameters = model.named_parameters();
  std::vector<size_t> bucket_of(parameters.size());
  for (size_t i = parameters.size(); i-- > 0;) {
    const Tensor& p = parameters[i].second;
    const int64_t begin = p.offset() - flat.offset(), end = begin + p.numel();
    if (buckets_.empty() || (buckets_.back().end - buckets_.back().begin) + p.numel() > bucket_elements)
      buckets_.push_back({begin, end, 0});
    Bucket& b = buckets_.back();
    b.begin = std::min(b.begin, begin);
    b.end = std::max(b.end, end);
    ++b.parameters;
    bucket_of[i] = buckets_.size() - 1;
  }
  for (size_t i = 0; i < parameters.size(); ++i) {
    const size_t bucket = bucket_of[i];
    parameters[i].second.register_grad_ready_hook([this, bucket](const Tensor&) { parameter_ready(bucket); });
  }
  waiting_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = buckets_[b].parameters;
  pending_.resize(buckets_.size());
}

void DataParallelGradients::start(size_t bucket) {
  const Bucket& b = buckets_[bucket];
  pending_[bucket] = world_.all_reduce_async(model_.flat_gradients().slice(0, b.begin, b.end), Reduction::Average);
}

void DataParallelGradients::parameter_ready(size_t bucket) {
  ENGINE_CHECK(waiting_[bucket] > 0,
               "DataParallelGradients: a gradient of bucket {} arrived twice in one backward; call finish() after "
               "every backward",
               bucket);
  --waiting_[bucket];
  for (size_t b = 0; b < next_to_start_; ++b) pending_[b]->progress();  // let started ones move on
  // In bucket order, so every rank starts the same all-reduces in the same order.
  while (next_to_start_ < buckets_.size() && waiting_[next_to_start_] == 0) {
    start(next_to_start_++);
    ++hook_starts_;
  }
}

void DataParallelGradients::finish() {
  if (buckets_.empty()) return;
  started_by_hooks_ = hook_starts_;
  hook_starts_ = 0;
  while (next_to_start_ < buckets_.size()) start(next_to_start_++);
  for (auto& pending : pending_) {
    pending->wait();
    pending.reset();
  }
  next_to_start_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = buckets_[b].parameters;
}

void broadcast_buffers(Module& model, Collectives& world) {
  if (world.world_size() == 1) return;
  for (auto& [name, buffer] : model.named_buffers()) {
    Tensor t = buffer;
    ENGINE_CHECK(t.is_contiguous(), "broadcast_buffers: buffer {} is not contiguous: {}", name, t.str());
    world.broadcast(t, 0);
  }
}

namespace {

struct AllGatherRowsBackward : Node {
  Collectives* world = nullptr;
  int64_t rows = 0;  // this rank's
  const char* name() const override { return "AllGatherRowsBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor sum = dout.contiguous().clone();  // (W n, ...)
    world->all_reduce(sum, Reduction::Sum);
    const int64_t first = world->rank() * rows;
    return {sum.slice(0, first, first + rows).contiguous()};
  }
};

}  // namespace

Tensor all_gather_rows(const Tensor& x, Collectives& world) {
  check_defined(x, "all_gather_rows", "x");
  if (world.world_size() == 1) return x;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = world.all_gather(x.detach().contiguous());
  }
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<AllGatherRowsBackward>();
    node->world = &world;
    node->rows = x.size(0);
    autograd::record(node, out, {&x});
  }
  return out;
}

}  // namespace engine::nn
