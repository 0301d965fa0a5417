// knn.cpp - see knn.h.
#include "ssl/eval/knn.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "data/image_folder.h"
#include "engine/autograd.h"
#include "engine/check.h"
#include "ops/l2_normalize.h"
#include "ops/matmul.h"

namespace engine::ssl {

namespace {

void check_knn_options(const KnnOptions& options) {
  ENGINE_CHECK(options.k >= 1 && options.temperature > 0 && options.chunk >= 1,
               "knn: k ({}) and the chunk ({}) must be at least 1 and the temperature ({}) positive", options.k,
               options.chunk, options.temperature);
}

}  // namespace

Tensor knn_class_scores(const Tensor& bank, const Tensor& bank_labels, const Tensor& queries, int64_t classes,
                        const KnnOptions& options) {
  ENGINE_CHECK(bank.dim() == 2 && queries.dim() == 2 && bank.size(1) == queries.size(1),
               "knn: expected a bank (M, F) and queries (Q, F) of one feature size, found {} and {}", bank.str(),
               queries.str());
  ENGINE_CHECK(bank_labels.dim() == 1 && bank_labels.size(0) == bank.size(0) && bank_labels.dtype() == DType::i64,
               "knn: expected bank labels (M) i64 with M = {}, found {}", bank.size(0), bank_labels.str());
  check_knn_options(options);
  ENGINE_CHECK(bank.size(0) >= 1 && classes >= 1, "knn: the memory bank is empty");
  const int64_t M = bank.size(0), Q = queries.size(0), k = std::min(options.k, M);
  const std::vector<int64_t> labels = bank_labels.to(Device::cpu()).contiguous().to_vector<int64_t>();
  for (int64_t label : labels)
    ENGINE_CHECK(label >= 0 && label < classes, "knn: bank label {} is outside the {} classes", label, classes);
  Tensor scores = Tensor::zeros({Q, classes}, DType::f64);
  double* out = scores.data<double>();
  NoGradGuard no_grad;
  std::vector<int64_t> order(static_cast<size_t>(M));
  for (int64_t start = 0; start < Q; start += options.chunk) {
    const int64_t n = std::min(options.chunk, Q - start);
    const Tensor sims = matmul(queries.slice(0, start, start + n).contiguous(), bank, false, true);  // (n, M)
    const std::vector<float> s = sims.to(Device::cpu()).contiguous().to_vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      const float* row = s.data() + i * M;
      for (int64_t j = 0; j < M; ++j)
        ENGINE_CHECK(std::isfinite(row[j]), "knn: the similarity of query {} and bank row {} is {}; the features are "
                     "not finite", start + i, j, row[j]);
      std::iota(order.begin(), order.end(), int64_t{0});
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int64_t a, int64_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      double* votes = out + (start + i) * classes;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t idx = order[static_cast<size_t>(j)];
        votes[labels[static_cast<size_t>(idx)]] += std::exp(static_cast<double>(row[idx]) / options.temperature);
      }
    }
  }
  return scores;
}

TopkCounts knn_evaluate(const FeatureSet& bank, const FeatureSet& queries, const KnnOptions& options) {
  const int64_t classes = std::max(bank.classes, queries.classes);
  NoGradGuard no_grad;
  const Tensor scores = knn_class_scores(l2_normalize(bank.features), bank.labels, l2_normalize(queries.features),
                                         classes, options);
  return topk_counts(scores, queries.labels);
}

TopkCounts knn_on_folders(nn::ResNet& backbone, const std::string& data, int64_t image_size,
                          const FeatureOptions& features, const KnnOptions& options) {
  check_knn_options(options);
  const std::string bank_root = data::resolve_split(data, "train"), query_root = data::resolve_split(data, "val");
  ENGINE_CHECK(bank_root != query_root,
               "knn: {} is an image folder without train/ and val/; kNN needs both splits (the memory bank and the "
               "queries): give a dataset root holding train/ and val/",
               data);
  auto bank_set = std::make_shared<data::ImageFolder>(bank_root);
  auto query_set = std::make_shared<data::ImageFolder>(query_root);
  ENGINE_CHECK(bank_set->classes() == query_set->classes(),
               "knn: {} and {} have different class folders; the two splits must name the same classes",
               bank_set->root(), query_set->root());
  const data::AugmentConfig transform = data::eval_transform(static_cast<int>(image_size));
  const FeatureSet bank = extract_features(backbone, bank_set, transform, features);
  const FeatureSet queries = extract_shard_features(backbone, query_set, transform, features);
  TopkCounts mine;  // a rank past the end of a small val/ has no queries
  if (queries.features.size(0) > 0) mine = knn_evaluate(bank, queries, options);
  return sum_over_ranks(mine, features.world ? *features.world : local_collectives());
}

}  // namespace engine::ssl
