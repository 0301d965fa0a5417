// accuracy.h - top-k accuracy from class scores, shared by kNN and the linear probe.
//
// An image counts as correct at k when its label's score is among the k best. Ties are broken
// towards the lower class index (deterministic, unlike torch.topk's unspecified order): the label's
// rank is the number of classes with a higher score, plus those with the same score and a lower
// index.
#pragma once

#include <cstdint>

#include "engine/collectives.h"
#include "engine/tensor.h"

namespace engine::ssl {

struct TopkCounts {
  int64_t correct1 = 0, correct5 = 0, total = 0;
  double top1() const { return total ? 100.0 * static_cast<double>(correct1) / static_cast<double>(total) : 0.0; }
  double top5() const { return total ? 100.0 * static_cast<double>(correct5) / static_cast<double>(total) : 0.0; }
  TopkCounts& operator+=(const TopkCounts& o) {
    correct1 += o.correct1, correct5 += o.correct5, total += o.total;
    return *this;
  }
};

// scores (N, C) of any float dtype and device, labels (N) i64.
TopkCounts topk_counts(const Tensor& scores, const Tensor& labels);

// The counts of every rank added up (an all-reduce; every rank must call it): each rank counts its
// shard of the images, so the sum is the whole set's.
TopkCounts sum_over_ranks(const TopkCounts& mine, Collectives& world);

}  // namespace engine::ssl
