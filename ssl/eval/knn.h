// knn.h - the weighted k-nearest-neighbour classifier of Wu et al. (InstDisc), the usual monitor
// of self-supervised features.
//
// With unit-length features (rows L2-normalised), for a query q and the memory bank's rows b_j:
//   s_j = q . b_j                          cosine similarity
//   N_k = the k rows of largest s_j       (ties: the lower row index first)
//   score(c) = sum over j in N_k with label c of exp(s_j / t)
// and the prediction is the class of highest score. k = 200 and t = 0.07 are the protocol's
// values. The similarities are one GEMM per chunk of queries on the features' device; the
// neighbour selection runs on the host.
#pragma once

#include <cstdint>

#include "engine/tensor.h"
#include "ssl/eval/accuracy.h"
#include "ssl/eval/features.h"

namespace engine::ssl {

struct KnnOptions {
  int64_t k = 200;
  double temperature = 0.07;
  int64_t chunk = 256;  // queries per similarity GEMM
};

// bank (M, F) and queries (Q, F) with unit rows on one device, bank_labels (M) i64 in [0, classes).
// Returns the class scores (Q, classes) f64 on the host. k larger than M uses all M rows.
Tensor knn_class_scores(const Tensor& bank, const Tensor& bank_labels, const Tensor& queries, int64_t classes,
                        const KnnOptions& options);

// Normalises both feature sets, classifies `queries` against `bank`, and counts top-1 and top-5.
TopkCounts knn_evaluate(const FeatureSet& bank, const FeatureSet& queries, const KnnOptions& options);

// The protocol on a dataset root: the memory bank is DATA/train, the queries DATA/val, both through
// the evaluation transform at `image_size` (and high-passed when options.high_pass). `backbone`
// must be in eval mode. Distributed (features.world): the ranks share the extraction; every rank
// holds the whole bank and classifies its shard of the queries, and the counts are added over the
// ranks, so every rank returns the counts of all the queries. Every rank must call it.
TopkCounts knn_on_folders(nn::ResNet& backbone, const std::string& data, int64_t image_size,
                          const FeatureOptions& features, const KnnOptions& options);

}  // namespace engine::ssl
