// test_collectives.cpp - the collectives of engine/collectives.h on every rank: sums, means,
// gathers and broadcasts of known values, on the CPU and (in the emulation build, or on a GPU) on
// CUDA tensors; and the one-process world, which is the identity.
#include <gtest/gtest.h>

#include <vector>

#include "engine/collectives.h"
#include "engine/device.h"
#include "tests/distributed/distributed_env.h"

namespace engine {
namespace {

using testing::world;

std::vector<Device> devices() {
  std::vector<Device> out = {Device::cpu()};
  if (cuda_device_count() > 0) out.push_back(Device::cuda(0));
  return out;
}

// Rank r's values: r + 1 + i / 8 at position i (exact in f32 and f64).
Tensor rank_values(int64_t n, DType dtype, Device device) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = world().rank() + 1 + static_cast<double>(i) / 8;
  return Tensor::from_vector(v, {n}).to(dtype).to(device);
}

TEST(Collectives, AllReduceSumsAndAveragesOverTheRanks) {
  const int W = world().world_size();
  for (const Device device : devices()) {
    for (const DType dtype : {DType::f32, DType::f64}) {
      Tensor sum = rank_values(37, dtype, device), mean = rank_values(37, dtype, device);
      world().all_reduce(sum, Reduction::Sum);
      world().all_reduce(mean, Reduction::Average);
      const std::vector<double> s = sum.to_vector<double>(), m = mean.to_vector<double>();
      for (int64_t i = 0; i < 37; ++i) {
        const double expected_sum = W * (W + 1) / 2.0 + W * static_cast<double>(i) / 8;
        EXPECT_EQ(s[static_cast<size_t>(i)], expected_sum) << device.str() << " " << dtype_name(dtype) << " " << i;
        EXPECT_DOUBLE_EQ(m[static_cast<size_t>(i)], expected_sum / W) << device.str() << " " << i;
      }
    }
    Tensor counts = Tensor::from_vector(std::vector<int64_t>{world().rank(), 5}, {2}).to(device);
    world().all_reduce(counts, Reduction::Sum);
    EXPECT_EQ(counts.to_vector<int64_t>(), (std::vector<int64_t>{W * (W - 1) / 2, 5 * W})) << device.str();
  }
}

TEST(Collectives, AnAsynchronousReduceIsDoneAfterWait) {
  Tensor x = rank_values(1000, DType::f32, Device::cpu());
  std::unique_ptr<PendingReduce> pending = world().all_reduce_async(x, Reduction::Average);
  pending->wait();
  const int W = world().world_size();
  EXPECT_FLOAT_EQ(x.to_vector<float>()[0], (W + 1) / 2.0f);
  EXPECT_FLOAT_EQ(x.to_vector<float>()[999], (W + 1) / 2.0f + 999.0f / 8);
}

TEST(Collectives, AllGatherStacksEveryRanksRowsInRankOrder) {
  const int W = world().world_size();
  for (const Device device : devices()) {
    const Tensor mine = rank_values(6, DType::f32, device).view({3, 2});  // (3, 2)
    const Tensor all = world().all_gather(mine);                           // (3 W, 2)
    ASSERT_EQ(all.shape(), (Shape{3 * W, 2})) << device.str();
    EXPECT_EQ(all.device(), device);
    const std::vector<float> v = all.to_vector<float>();
    for (int r = 0; r < W; ++r)
      for (int i = 0; i < 6; ++i) EXPECT_EQ(v[static_cast<size_t>(r * 6 + i)], r + 1 + i / 8.0f) << device.str();
  }
}

TEST(Collectives, BroadcastGivesEveryRankTheRootsValues) {
  const int W = world().world_size();
  for (const Device device : devices()) {
    for (int root = 0; root < W; ++root) {
      Tensor x = rank_values(5, DType::f64, device);
      world().broadcast(x, root);
      EXPECT_EQ(x.to_vector<double>()[4], root + 1 + 0.5) << device.str() << " root " << root;
    }
  }
  world().barrier();
}

TEST(Collectives, TheOneProcessWorldIsTheIdentity) {
  Collectives& local = local_collectives();
  EXPECT_EQ(local.world_size(), 1);
  EXPECT_EQ(local.rank(), 0);
  Tensor x = Tensor::from_vector(std::vector<float>{1.5f, -2}, {2});
  local.all_reduce(x, Reduction::Average);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1.5f, -2}));
  EXPECT_TRUE(local.all_gather(x).is_same(x));
  EXPECT_THROW(local.broadcast(x, 1), Error);
}

// NCCL with one rank (the GPU check runs it; a lent machine has one GPU): the same values as MPI.
TEST(Collectives, NcclOnOneRankReducesGathersAndBroadcasts) {
#if !ENGINE_WITH_NCCL
  GTEST_SKIP() << "this build has no NCCL";
#else
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto local = std::shared_ptr<Collectives>(&local_collectives(), [](Collectives*) {});
  std::shared_ptr<Collectives> nccl = make_nccl_collectives(local, Device::cuda(0), ProcessGroupOptions{});
  EXPECT_STREQ(nccl->backend(), "nccl");
  Tensor x = Tensor::from_vector(std::vector<float>{1.5f, -2, 4}, {3}).to(Device::cuda(0));
  nccl->all_reduce(x, Reduction::Sum);
  nccl->all_reduce(x, Reduction::Average);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1.5f, -2, 4}));
  const Tensor g = nccl->all_gather(x.view({3, 1}));
  EXPECT_EQ(g.shape(), (Shape{3, 1}));
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{1.5f, -2, 4}));
  nccl->broadcast(x, 0);
  EXPECT_EQ(x.to_vector<float>()[2], 4.0f);
#endif
}

TEST(Collectives, ADeviceThatNamesOneGpuIsRefusedForManyRanks) {
  if (world().world_size() == 1) GTEST_SKIP() << "needs more than one rank";
  EXPECT_THROW(device_for_rank(Device::cuda(1), /*index_given=*/true, world()), Error);
  EXPECT_EQ(device_for_rank(Device::cpu(), false, world()), Device::cpu());
}

}  // namespace
}  // namespace engine
