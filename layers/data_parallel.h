// data_parallel.h - data-parallel training over the ranks of engine/collectives.h: what PyTorch's
// DistributedDataParallel does for a model, on our flat gradient buffer.
//
// Every rank holds the whole model and computes gradients on its share of the batch; before the
// optimizer step the gradients are averaged over the ranks, so every rank takes the same step and
// the weights stay identical without ever being sent. The flat gradient buffer (layers/module.h)
// is cut into buckets of about `bucket_bytes`, in reverse parameter order (the order the backward
// finishes them: the head's first, the stem's last). Each parameter's grad-ready hook counts down
// its bucket; the bucket whose last parameter is ready starts its all-reduce at once, so the
// communication of the late layers overlaps the backward of the early ones (with NCCL on GPUs its
// own stream; MPI on CPUs advances a started reduce only inside MPI calls, which each hook makes).
// finish() waits for them all (starting, in order, any bucket a backward did not reach).
//
// Buckets start in the same order on every rank, since the backward visits the same graph in the
// same order; MPI and NCCL need exactly that. Averaging is DDP's: the sum over ranks divided by W
// (each rank's loss is the mean over its own rows, so the average is the mean over the global
// batch).
//
// broadcast_buffers: BatchNorm's running statistics are not gradients and differ between ranks
// (each normalises its own images). As DDP's broadcast_buffers, rank 0's are the model's: they are
// copied to every rank before an evaluation in eval mode.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/collectives.h"
#include "layers/module.h"

namespace engine::nn {

class DataParallelGradients {
 public:
  // `model` must be flat and on its final device, and outlive this; hooks are registered on its
  // parameters. With a world of one rank nothing is registered and finish() does nothing.
  DataParallelGradients(Module& model, Collectives& world, int64_t bucket_bytes = int64_t{25} << 20);
  DataParallelGradients(const DataParallelGradients&) = delete;
  DataParallelGradients& operator=(const DataParallelGradients&) = delete;

  // After backward: the flat gradient buffer holds the mean over the ranks.
  void finish();

  struct Bucket {
    int64_t begin = 0, end = 0;  // elements [begin, end) of the flat gradient buffer
    int64_t parameters = 0;      // parameters whose gradients lie in it
  };
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // Buckets the last backward started from the hooks (the rest started in finish()).
  int64_t started_by_hooks() const { return started_by_hooks_; }

 private:
  void parameter_ready(size_t bucket);
  void start(size_t bucket);

  Module& model_;
  Collectives& world_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> waiting_;  // per bucket: parameters not yet ready in this backward
  std::vector<std::unique_ptr<PendingReduce>> pending_;  // per bucket, once started
  size_t next_to_start_ = 0;  // buckets start in order: 0, 1, ...
  int64_t hook_starts_ = 0, started_by_hooks_ = 0;
};

// Copies rank 0's buffers (BatchNorm's running statistics) to every rank.
void broadcast_buffers(Module& model, Collectives& world);

// x (n, ...) from every rank stacked in rank order, (W n, ...), with a gradient: a loss computed
// from the gathered rows on every rank sends each rank the sum over ranks of the gradient of its
// own rows (an all-reduce, then its slice). With every rank computing the same loss from the same
// rows (SimCLR's NT-Xent over the global batch), that is W times the true gradient, which the
// average of DataParallelGradients brings back to it.
Tensor all_gather_rows(const Tensor& x, Collectives& world);

}  // namespace engine::nn
