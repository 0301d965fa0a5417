// loader.h - the threaded data loader: image folder in, batches of augmented views out.
//
// Pipeline. N worker threads decode and augment samples straight into a ring of `prefetch` batch
// slots in pinned host memory; the training thread takes finished batches in order. Work is handed
// out one sample at a time, so the threads share every batch and a batch is ready as soon as
// possible. On a CUDA device each batch is copied to the GPU asynchronously on the engine stream;
// a StreamFence keeps the slot from being rewritten before its copy has run. On the CPU the batch
// tensors alias the slot (no copy), and the slot is reused when the last of them is dropped: batch
// g uses slot g % prefetch, so a CPU batch must be dropped (or cloned) before prefetch - 1 more
// calls to next(). Holding it longer is a clear error from next(), never a deadlock.
//
// Order and randomness (what makes runs reproducible whatever the thread count):
//   - the epoch order is engine::randperm over the dataset with Generator(seed, stream
//     kShuffleStreamBase + epoch), the same on every rank;
//   - batch b holds positions [b W B, (b + 1) W B) of it over the W ranks (the global batch), and
//     rank r takes the r-th B of them: so W ranks of B images see exactly what one process of W B
//     images sees, each rank a contiguous slice (which the distributed methods rely on; torch's
//     DistributedSampler deals positions round-robin instead). drop_last drops a short last global
//     batch; without it the short batch is dealt in slices of B, so a rank may get fewer or none;
//   - sample randomness comes from SampleRng(seed, epoch, dataset index), never from a thread.
// An undecodable file is reported once (with its path and the reason) and skipped: its slot takes
// the next position of the order instead (fresh random draws), so the batch stays full and the
// result still does not depend on the threads. skipped_this_epoch() counts the skips.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/image_folder.h"
#include "engine/tensor.h"

namespace engine::data {

struct LoaderOptions {
  int batch_size = 256;
  int workers = 4;   // decoding threads
  int prefetch = 0;  // batch slots in flight; 0: 2 + workers / 4
  int views = 2;     // views per image, each from its own random draws (TwoCropsTransform)
  bool shuffle = true;
  bool drop_last = true;
  uint64_t seed = 0;
  int rank = 0, world_size = 1;  // batch_size is this rank's share of the global batch
  bool fast_decode = false;  // reduced-size JPEG decoding when the crops allow it (see augment.h)
  Device device = Device::cpu();
};

constexpr uint64_t kShuffleStreamBase = 0x5348'0000'0000'0000ull;  // "SH": the epoch permutations

struct Batch {
  int64_t epoch = 0, index = 0;     // index: the batch's number within the epoch
  std::vector<Tensor> views;        // views[v]: (n, 3, size, size) f32 on the loader's device
  Tensor labels;                    // (n) i64 on the loader's device
  Tensor indices;                   // (n) i64, host: the dataset index of each sample
  Tensor boxes;                     // (n, views, 4) i32, host: top, left, height, width of each crop
  int64_t skipped = 0;              // undecodable files replaced while making this batch
  double wait_seconds = 0;          // how long next() waited for it
  int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

class Loader {
 public:
  Loader(std::shared_ptr<const ImageFolder> dataset, AugmentConfig augment, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Samples and batches of this rank per epoch.
  int64_t samples_per_epoch() const { return static_cast<int64_t>(order_size_); }
  int64_t batches_per_epoch() const;
  const LoaderOptions& options() const { return options_; }
  const AugmentConfig& augment() const { return augment_; }

  // Starts producing `epoch` (after finishing what the workers have in hand) from batch
  // `first_batch` on: a run resumed mid-epoch skips the batches it has trained on, without
  // decoding them, and gets the very batches an uninterrupted run gets. Batches of the previous
  // epoch not yet taken are discarded.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, or nothing at its end. Rethrows a worker's error.
  std::optional<Batch> next();
  // Distinct undecodable files met this epoch.
  int64_t skipped_this_epoch() const;

  // This rank's dataset indices in epoch order (before batching): the sampler alone.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  struct Slot;
  struct Shared;  // the slots and their lock, kept alive by batches that still alias a slot
  void worker_loop();
  void produce(int64_t unit, Slot& slot);
  void allocate_device_buffer(Slot& slot) const;  // GPU: the slot's device copy of a batch
  bool can_take_work() const;  // under the lock

  std::shared_ptr<const ImageFolder> dataset_;
  AugmentConfig augment_;
  LoaderOptions options_;
  size_t order_size_ = 0;
  size_t sample_floats_ = 0;  // 3 * size * size
  std::shared_ptr<Shared> shared_;

  // Guarded by shared_->mutex:
  std::vector<int64_t> order_;     // this rank's dataset indices for the current epoch
  int64_t epoch_ = -1;
  int64_t batch_base_ = 0;         // global number of the epoch's first batch (batch g uses slot g % prefetch)
  int64_t next_unit_ = 0;          // next sample (batch * B + position) to hand to a worker
  int64_t units_ = 0;              // samples in the epoch's batches
  int64_t taken_ = 0;              // batches handed to the caller this epoch
  int64_t busy_ = 0;               // workers holding a unit
  std::set<int64_t> skipped_this_epoch_;  // dataset indices found undecodable this epoch
  std::set<int64_t> bad_indices_;  // reported once, then skipped without decoding again
  std::exception_ptr error_;
  bool stopping_ = false;

  std::vector<std::thread> threads_;
};

}  // namespace engine::data
