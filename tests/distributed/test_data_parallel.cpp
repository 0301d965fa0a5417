// test_data_parallel.cpp - layers/data_parallel.h: the bucketed gradient average equals the mean
// of the gradients every rank's share gives on its own (computed here on each rank for all shares),
// the buckets start from the backward's hooks, the gathered rows carry their gradient, and rank
// 0's BatchNorm statistics reach every rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/random.h"
#include "layers/data_parallel.h"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "ops/reduce_dim.h"
#include "ssl/methods/method.h"
#include "tests/common/test_helpers.h"
#include "tests/distributed/distributed_env.h"

namespace engine {
namespace {

using testing::world;

std::shared_ptr<nn::ResNet> small_resnet() {
  auto net = ssl::make_encoder({.arch = "resnet18", .small_stem = true, .width = 8, .dim = 4, .mlp = true}, 3);
  net->flatten_parameters();
  return net;
}

// Share r of a fixed global batch of W * 2 images (every rank makes the same global batch).
Tensor share(int64_t r, int64_t per_rank) {
  Tensor all = Tensor::empty({world().world_size() * per_rank, 3, 16, 16});
  Generator gen(11, 1);
  normal_(all, gen);
  return all.slice(0, r * per_rank, (r + 1) * per_rank).contiguous();
}

TEST(DataParallel, TheBucketedAverageIsTheMeanOfEveryRanksGradient) {
  const int W = world().world_size();
  // What every rank's share gives on its own, averaged: computed on each rank without collectives.
  auto reference = small_resnet();
  Tensor expected = Tensor::zeros({reference->flat_gradients().numel()});
  for (int r = 0; r < W; ++r) {
    reference->zero_grad();
    sum(reference->forward(share(r, 2))).backward();
    expected = expected + reference->flat_gradients() * (1.0 / W);
  }
  // The same through the buckets (small ones: the hooks start most of them during the backward).
  auto net = small_resnet();
  nn::DataParallelGradients gradients(*net, world(), /*bucket_bytes=*/16 * 1024);
  for (int step = 0; step < 2; ++step) {  // twice: the countdown starts afresh each backward
    net->zero_grad();
    sum(net->forward(share(world().rank(), 2))).backward();
    gradients.finish();
    EXPECT_TRUE(testing::all_close(net->flat_gradients(), expected, 1e-5, 0)) << "step " << step;
  }
  if (W > 1) {
    EXPECT_GT(gradients.buckets().size(), 3u);
    EXPECT_EQ(gradients.started_by_hooks(), static_cast<int64_t>(gradients.buckets().size()));
    int64_t covered = 0;
    for (const auto& b : gradients.buckets()) covered += b.parameters;
    EXPECT_EQ(covered, static_cast<int64_t>(net->named_parameters().size()));
  } else {
    EXPECT_TRUE(gradients.buckets().empty());
  }
}

TEST(DataParallel, GatheredRowsSendEachRankTheSumOfItsRowsGradients) {
  const int W = world().world_size(), r = world().rank();
  // x (2, 3) on rank r holds r + 1; every rank takes loss = sum(w * gathered) with w = row index.
  Tensor x = Tensor::full({2, 3}, r + 1.0).requires_grad_();
  const Tensor all = nn::all_gather_rows(x, world());  // (2 W, 3)
  ASSERT_EQ(all.shape(), (Shape{2 * W, 3}));
  std::vector<float> w(static_cast<size_t>(6 * W));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i / 3);
  sum(all * Tensor::from_vector(w, {2 * W, 3})).backward();
  const std::vector<float> g = x.grad().to_vector<float>();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(g[static_cast<size_t>(i)], W * static_cast<float>(2 * r + i / 3)) << i;
}

TEST(DataParallel, BroadcastBuffersGivesEveryRankRankZerosStatistics) {
  auto net = small_resnet();
  net->forward(share(world().rank(), 2));  // training mode: each rank's own running statistics
  nn::broadcast_buffers(*net, world());
  auto zero = small_resnet();
  zero->forward(share(0, 2));
  const NamedTensors mine = net->named_buffers(), expected = zero->named_buffers();
  ASSERT_EQ(mine.size(), expected.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    ASSERT_EQ(mine[i].first, expected[i].first);
    EXPECT_EQ(mine[i].second.to(DType::f64).to_vector<double>(), expected[i].second.to(DType::f64).to_vector<double>())
        << mine[i].first;
  }
}

}  // namespace
}  // namespace engine
