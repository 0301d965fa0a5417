// loader.cpp - see loader.h for the pipeline, the order and the randomness.
#include "data/loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "data/codec.h"
#include "engine/allocator.h"
#include "engine/check.h"
#include "engine/log.h"
#include "engine/random.h"
#include "engine/stream_fence.h"

namespace engine::data {

namespace {
// How many consecutive undecodable files one batch position may step over before the loader gives
// up: far more than a healthy dataset has in a row, few enough to fail fast on a broken one.
constexpr int kMaxConsecutiveSkips = 1000;
}  // namespace

// One batch in flight. When the loader feeds a GPU its host memory is pinned and it has a device
// buffer of its own: next() copies the batch there on the device's copy stream, and the batch's
// tensors are views of that buffer, so the copy of the next batch overlaps the current step.
struct Loader::Slot {
  HostBuffer views;  // views * batch_size samples, view-major: sample s of view v at (v * B + s)
  HostBuffer pinned_labels;    // GPU only: batch_size i64, staged for the copy
  void* device_views = nullptr;     // GPU only: what `views` holds, on the device
  int64_t* device_labels = nullptr; // GPU only: batch_size i64 on the device
  int device = 0;
  bool device_leased = false;  // GPU: the caller's tensors alias the device buffer
  StreamFence device_released;      // GPU: the engine stream is done with the device buffer
  std::vector<int64_t> labels, indices;
  std::vector<int32_t> boxes;  // batch_size * views * 4
  int64_t batch = -1;          // the global batch number it holds
  int64_t size = 0, filled = 0, skipped = 0;
  bool free = true;            // may be claimed for a new batch
  bool leased = false;         // handed out: the caller's tensors alias it (CPU)
  StreamFence fence;           // the copy to the GPU that read it last

  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() {
    try {
      fence.wait();  // never free memory an asynchronous copy may still read
    } catch (const std::exception& e) {
      ENGINE_WARN("Loader: waiting for a copy to the GPU failed while shutting down: {}", e.what());
    }
    if (views.data) pinned_free(views);
    if (pinned_labels.data) pinned_free(pinned_labels);
    // Returned stream-ordered on the engine stream, after every step that read them.
    if (device_views) cuda_free(device, device_views);
    if (device_labels) cuda_free(device, device_labels);
  }
};

struct Loader::Shared {
  std::mutex mutex;
  std::condition_variable work_ready, batch_ready, idle;
  std::vector<std::unique_ptr<Slot>> slots;  // never moved: workers hold references
};

void Loader::allocate_device_buffer(Slot& slot) const {
  const size_t B = static_cast<size_t>(options_.batch_size), V = static_cast<size_t>(options_.views);
  void* views = cuda_allocate(slot.device, V * B * sample_floats_ * sizeof(float));
  void* labels = nullptr;
  try {
    labels = cuda_allocate(slot.device, B * sizeof(int64_t));
  } catch (...) {
    cuda_free(slot.device, views);
    throw;
  }
  slot.device_views = views;
  slot.device_labels = static_cast<int64_t*>(labels);
  // The memory comes from the engine stream's allocator: earlier work on the engine stream may
  // still use it, so the copy stream may write it only once the engine stream has got here.
  slot.device_released = StreamFence::record(options_.device);
}

Loader::Loader(std::shared_ptr<const ImageFolder> dataset, AugmentConfig augment, LoaderOptions options)
    : dataset_(std::move(dataset)), augment_(augment), options_(options), shared_(std::make_shared<Shared>()) {
  ENGINE_CHECK(dataset_ && dataset_->size() > 0, "Loader: the dataset is empty");
  ENGINE_CHECK(options_.batch_size >= 1, "Loader: batch size must be at least 1, found {}", options_.batch_size);
  ENGINE_CHECK(options_.workers >= 1, "Loader: need at least one worker thread, found {}", options_.workers);
  ENGINE_CHECK(options_.views >= 1, "Loader: need at least one view per image, found {}", options_.views);
  ENGINE_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
               "Loader: rank {} is not in [0, world size {})", options_.rank, options_.world_size);
  ENGINE_CHECK(augment_.size >= 1, "Loader: image size must be positive, found {}", augment_.size);
  if (options_.device.is_cuda()) require_cuda_device(options_.device, "Loader");
  // This rank's share of the epoch (see epoch_order): full global batches, then its part of the rest.
  {
    const int64_t n = dataset_->size(), B = options_.batch_size, global = B * options_.world_size;
    order_size_ = static_cast<size_t>((n / global) * B + std::clamp<int64_t>(n % global - options_.rank * B, 0, B));
  }
  // Without drop_last (evaluation) a rank past the end of a small dataset may have nothing to do.
  ENGINE_CHECK(batches_per_epoch() >= 1 || (!options_.drop_last && options_.rank > 0),
               "Loader: '{}' has {} images, fewer than one batch of {} per rank for {} rank(s) (drop_last is on): "
               "lower the batch size or add images",
               dataset_->root(), dataset_->size(), options_.batch_size, options_.world_size);
  sample_floats_ = static_cast<size_t>(3) * augment_.size * augment_.size;
  if (options_.prefetch <= 0) options_.prefetch = 2 + options_.workers / 4;
  const size_t B = static_cast<size_t>(options_.batch_size), V = static_cast<size_t>(options_.views);
  for (int i = 0; i < options_.prefetch; ++i) {
    Slot& slot = *shared_->slots.emplace_back(std::make_unique<Slot>());
    slot.views = options_.device.is_cuda() ? pinned_allocate(V * B * sample_floats_ * sizeof(float))
                                           : HostBuffer{host_allocate(V * B * sample_floats_ * sizeof(float)),
                                                        V * B * sample_floats_ * sizeof(float), false};
    if (options_.device.is_cuda()) {
      slot.device = options_.device.index;
      allocate_device_buffer(slot);
      slot.pinned_labels = pinned_allocate(B * sizeof(int64_t));
    }
    slot.labels.resize(B);
    slot.indices.resize(B);
    slot.boxes.resize(B * V * 4);
  }
  if (options_.fast_decode)
    log_warning("loader: --fast-decode is on: JPEGs are decoded at 1/2, 1/4 or 1/8 size when the crops allow "
                       "it (faster, slightly different pixels)");
  for (int t = 0; t < options_.workers; ++t) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    stopping_ = true;
  }
  shared_->work_ready.notify_all();
  for (std::thread& t : threads_) t.join();
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(order_size_), B = options_.batch_size;
  // drop_last: the full global batches, the same count on every rank (each step is a collective).
  return options_.drop_last ? dataset_->size() / (B * options_.world_size) : (n + B - 1) / B;
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  const int64_t n = dataset_->size();
  std::vector<int64_t> all(static_cast<size_t>(n));
  if (options_.shuffle) {
    Generator gen(options_.seed, kShuffleStreamBase + static_cast<uint64_t>(epoch));
    all = randperm(n, gen).to_vector<int64_t>();
  } else {
    for (int64_t i = 0; i < n; ++i) all[i] = i;
  }
  // Ranks: global batch g holds positions [g W B, (g + 1) W B) of the shared order, and rank r takes
  // its r-th B of them; the short last global batch is dealt the same way (drop_last then drops
  // what is short on each rank).
  const int64_t world = options_.world_size, B = options_.batch_size, global = world * B;
  std::vector<int64_t> mine;
  mine.reserve(order_size_);
  for (int64_t start = 0; start < n; start += global) {
    const int64_t from = std::min(n, start + options_.rank * B), to = std::min(n, from + B);
    for (int64_t p = from; p < to; ++p) mine.push_back(all[static_cast<size_t>(p)]);
  }
  return mine;
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  ENGINE_CHECK(epoch >= 0 && epoch < (int64_t{1} << 23), "Loader::start_epoch: epoch {} out of range", epoch);
  ENGINE_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(),
               "Loader::start_epoch: first batch {} is outside the epoch's {} batches", first_batch,
               batches_per_epoch());
  std::vector<int64_t> order = epoch_order(epoch);
  std::unique_lock<std::mutex> lock(shared_->mutex);
  next_unit_ = units_;  // hand out nothing more of the old epoch
  shared_->idle.wait(lock, [&] { return busy_ == 0; });
  for (auto& slot : shared_->slots) {
    if (!slot->leased) {
      slot->free = true;
      slot->batch = -1;
    }
  }
  // Batches keep counting across epochs, so the ring rotation goes on where it stopped (an epoch
  // cut short included) and a batch the caller still holds keeps its slot.
  batch_base_ += taken_;
  epoch_ = epoch;
  order_ = std::move(order);
  next_unit_ = first_batch * options_.batch_size;
  units_ = options_.drop_last ? batches_per_epoch() * options_.batch_size : static_cast<int64_t>(order_size_);
  taken_ = first_batch;
  skipped_this_epoch_.clear();
  lock.unlock();
  shared_->work_ready.notify_all();
}

int64_t Loader::skipped_this_epoch() const {
  std::lock_guard<std::mutex> lock(shared_->mutex);
  return static_cast<int64_t>(skipped_this_epoch_.size());
}

bool Loader::can_take_work() const {
  if (next_unit_ >= units_) return false;
  const int64_t g = batch_base_ + next_unit_ / options_.batch_size;
  const Slot& slot = *shared_->slots[static_cast<size_t>(g % options_.prefetch)];
  return slot.batch == g || slot.free;
}

void Loader::worker_loop() {
  std::unique_lock<std::mutex> lock(shared_->mutex);
  while (true) {
    shared_->work_ready.wait(lock, [&] { return stopping_ || can_take_work(); });
    if (stopping_) return;
    const int64_t unit = next_unit_++;
    const int64_t b = unit / options_.batch_size, g = batch_base_ + b;
    Slot& slot = *shared_->slots[static_cast<size_t>(g % options_.prefetch)];
    if (slot.batch != g) {  // first sample of this batch: claim the slot
      slot.batch = g;
      slot.free = false;
      slot.size = std::min<int64_t>(options_.batch_size, units_ - b * options_.batch_size);
      slot.filled = slot.skipped = 0;
    }
    ++busy_;
    // The GPU copy of the slot's previous batch must have run before the slot is written. Waited
    // on outside the lock: it can last as long as the training step queued before it.
    const StreamFence fence = slot.fence;
    lock.unlock();
    try {
      fence.wait();
      produce(unit, slot);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      lock.unlock();
    }
    lock.lock();
    --busy_;
    if (++slot.filled == slot.size) shared_->batch_ready.notify_all();
    if (busy_ == 0) shared_->idle.notify_all();
  }
}

void Loader::produce(int64_t unit, Slot& slot) {
  const int64_t B = options_.batch_size, s = unit % B;
  const int V = options_.views;
  std::vector<float*> outs(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v)
    outs[v] = static_cast<float*>(slot.views.data) + (static_cast<size_t>(v) * B + s) * sample_floats_;
  for (int attempt = 0; attempt < kMaxConsecutiveSkips; ++attempt) {
    const int64_t index = order_[static_cast<size_t>((unit + attempt) % static_cast<int64_t>(order_size_))];
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      if (bad_indices_.count(index)) {
        skipped_this_epoch_.insert(index);
        ++slot.skipped;
        continue;
      }
    }
    const Sample& sample = (*dataset_)[index];
    try {
      SampleRng rng(options_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(index),
                    static_cast<uint64_t>(attempt));
      const SampleViews made = make_views(read_file_bytes(sample.path), sample.path, augment_, V,
                                          options_.fast_decode, rng, outs);
      slot.labels[s] = sample.label;
      slot.indices[s] = index;
      for (int v = 0; v < V; ++v) {
        const CropBox& box = made.views[v].box;
        int32_t* dst = &slot.boxes[(static_cast<size_t>(s) * V + v) * 4];
        dst[0] = box.top, dst[1] = box.left, dst[2] = box.height, dst[3] = box.width;
      }
      return;
    } catch (const DecodeError& e) {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      if (bad_indices_.insert(index).second) log_warning("loader: skipping {}", e.what());
      skipped_this_epoch_.insert(index);
      ++slot.skipped;
    }
  }
  ENGINE_THROW("Loader: {} files in a row in '{}' could not be decoded (see the messages above); the dataset looks "
               "broken", kMaxConsecutiveSkips, dataset_->root());
}

std::optional<Batch> Loader::next() {
  const auto start = std::chrono::steady_clock::now();
  // Before the lock: should something below throw, the batch (whose views' deleters take the
  // lock) must be destroyed after the lock is released, not while this thread holds it.
  Batch batch;
  std::shared_ptr<void> lease;  // returns the slot's buffer when its last view is dropped
  std::unique_lock<std::mutex> lock(shared_->mutex);
  ENGINE_CHECK(epoch_ >= 0, "Loader::next: call start_epoch(epoch) first");
  if (taken_ == batches_per_epoch()) return std::nullopt;
  const int64_t g = batch_base_ + taken_;
  const size_t slot_index = static_cast<size_t>(g % options_.prefetch);
  Slot& slot = *shared_->slots[slot_index];
  ENGINE_CHECK(!(slot.leased && slot.batch != g),
               "Loader::next: batch {} needs the slot still held by batches the caller references from {} batches "
               "earlier; the loader keeps {} batches in flight, so hold at most {} at once: drop or clone older "
               "batches (or raise prefetch)", taken_, options_.prefetch, options_.prefetch, options_.prefetch - 1);
  shared_->batch_ready.wait(lock, [&] { return error_ || (slot.batch == g && slot.filled == slot.size); });
  if (error_) std::rethrow_exception(error_);

  batch.epoch = epoch_;
  batch.index = taken_;
  batch.skipped = slot.skipped;
  const int64_t n = slot.size, V = options_.views, S = augment_.size;
  const Device device = options_.device;
  batch.indices = Tensor::from_vector(std::vector<int64_t>(slot.indices.begin(), slot.indices.begin() + n), {n});
  batch.boxes = Tensor::from_vector(std::vector<int32_t>(slot.boxes.begin(), slot.boxes.begin() + n * V * 4), {n, V, 4});
  const size_t view_bytes = static_cast<size_t>(n) * sample_floats_ * sizeof(float);
  const size_t view_stride = static_cast<size_t>(options_.batch_size) * sample_floats_;
  if (device.is_cpu()) {
    batch.labels = Tensor::from_vector(std::vector<int64_t>(slot.labels.begin(), slot.labels.begin() + n), {n});
    // Zero copy: the views alias the slot, which returns to the ring when the last of them is dropped.
    slot.leased = true;
    lease = std::shared_ptr<void>(nullptr, [shared = shared_, slot_index](void*) {
      {
        std::lock_guard<std::mutex> guard(shared->mutex);
        shared->slots[slot_index]->leased = false;
        shared->slots[slot_index]->free = true;
      }
      shared->work_ready.notify_all();
    });
  } else {
    if (slot.device_leased) {
      // The caller still holds the batch that used this buffer: that batch keeps it (its views free
      // it when dropped) and this one gets new memory.
      allocate_device_buffer(slot);
      slot.device_leased = false;
    }
    // On the copy stream: first wait for the steps that read this buffer's previous batch, then
    // the copies; the engine stream waits for them before the next op that reads the batch, and
    // the pinned buffer may be refilled once they have run.
    std::memcpy(slot.pinned_labels.data, slot.labels.data(), static_cast<size_t>(n) * sizeof(int64_t));
    slot.device_released.make_stream_wait(StreamKind::Copy);
    ENGINE_DISPATCH_CUDA(device, "Loader (copy to the GPU)", {
      for (int64_t v = 0; v < V; ++v)
        copy_to_device_on_copy_stream_cuda(static_cast<float*>(slot.device_views) + v * view_stride,
                                           static_cast<float*>(slot.views.data) + v * view_stride, view_bytes,
                                           device.index);
      copy_to_device_on_copy_stream_cuda(slot.device_labels, slot.pinned_labels.data,
                                         static_cast<size_t>(n) * sizeof(int64_t), device.index);
    });
    slot.fence = StreamFence::record(device, StreamKind::Copy);
    slot.fence.make_stream_wait(StreamKind::Engine);
    slot.free = true;  // the pinned buffer: its next batch is decoded once the fence is reached
    // The device buffer comes back when the last view of it is dropped: every step that reads it
    // has been enqueued by then, so the end of the engine stream at that moment is when it is free.
    slot.device_leased = true;
    lease = std::shared_ptr<void>(nullptr, [shared = shared_, slot_index, device, views = slot.device_views,
                                            labels = slot.device_labels](void*) {
      std::lock_guard<std::mutex> guard(shared->mutex);
      Slot& owner = *shared->slots[slot_index];
      const bool current = owner.device_views == views;
      if (current) owner.device_leased = false;
      try {  // a destructor must not throw; if this fails, the GPU is failing anyway
        if (current) {
          owner.device_released = StreamFence::record(device);
        } else {  // the slot moved on to new memory while this batch was held: return the old one
          cuda_free(device.index, views);
          cuda_free(device.index, labels);
        }
      } catch (const std::exception& e) {
        ENGINE_WARN("Loader: returning a batch's device buffer failed: {}", e.what());
      }
    });
    auto labels = Storage::wrap(slot.device_labels, static_cast<size_t>(n) * sizeof(int64_t), device, [lease](void*) {});
    batch.labels = Tensor::from_storage(labels, {n}, contiguous_strides({n}), 0, DType::i64);
  }
  // The views alias the slot's buffer (host or device), which returns when the lease is dropped.
  float* views = static_cast<float*>(device.is_cpu() ? slot.views.data : slot.device_views);
  for (int64_t v = 0; v < V; ++v) {
    auto storage = Storage::wrap(views + v * view_stride, view_bytes, device, [lease](void*) {});
    batch.views.push_back(Tensor::from_storage(storage, {n, 3, S, S}, contiguous_strides({n, 3, S, S}), 0, DType::f32));
  }
  ++taken_;
  lock.unlock();
  shared_->work_ready.notify_all();
  batch.wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return batch;
}

}  // namespace engine::data
