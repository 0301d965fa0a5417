// accuracy.cpp - see accuracy.h.
#include "ssl/eval/accuracy.h"

#include <cmath>

#include "engine/check.h"

namespace engine::ssl {

TopkCounts topk_counts(const Tensor& scores, const Tensor& labels) {
  ENGINE_CHECK(scores.dim() == 2 && labels.dim() == 1 && labels.size(0) == scores.size(0),
               "topk_counts: expected scores (N, C) and labels (N), found {} and {}", scores.str(), labels.str());
  ENGINE_CHECK(labels.dtype() == DType::i64, "topk_counts: labels must be i64, found {}", labels.str());
  const int64_t N = scores.size(0), C = scores.size(1);
  const std::vector<double> s = scores.to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
  const std::vector<int64_t> y = labels.to(Device::cpu()).contiguous().to_vector<int64_t>();
  TopkCounts counts;
  counts.total = N;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t label = y[static_cast<size_t>(i)];
    ENGINE_CHECK(label >= 0 && label < C, "topk_counts: label {} of row {} is outside the {} classes", label, i, C);
    const double* row = s.data() + i * C;
    ENGINE_CHECK(std::isfinite(row[label]), "topk_counts: row {} scores its label {} as {}; the model's outputs are "
                 "not finite", i, label, row[label]);
    int64_t rank = 0;
    for (int64_t c = 0; c < C; ++c)
      if (row[c] > row[label] || (row[c] == row[label] && c < label)) ++rank;
    counts.correct1 += rank < 1;
    counts.correct5 += rank < 5;
  }
  return counts;
}

TopkCounts sum_over_ranks(const TopkCounts& mine, Collectives& world) {
  if (world.world_size() == 1) return mine;
  Tensor counts = Tensor::from_vector(std::vector<int64_t>{mine.correct1, mine.correct5, mine.total}, {3});
  world.all_reduce(counts, Reduction::Sum);
  const int64_t* sum = counts.data<int64_t>();
  return {sum[0], sum[1], sum[2]};
}

}  // namespace engine::ssl
