// test_ghost_batchnorm.cpp - ghost BatchNorm (groups of a batch normalised separately, the
// single-device stand-in for per-GPU BatchNorm, METHOD.md sections 6.3 and 8) against plain BatchNorm run
// on each group by itself; the running statistics under both rules of METHOD.md O12.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "ops/batchnorm2d.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

struct Stats {
  Tensor mean = Tensor::from_vector<double>({0.1, -0.2, 0.3}, {3});
  Tensor var = Tensor::from_vector<double>({1.0, 0.5, 2.0}, {3});
};

BatchNormOptions train_options(int64_t groups, GhostRunningStats rule) {
  BatchNormOptions opt;
  opt.groups = groups;
  opt.running_stats = rule;
  return opt;
}

TEST(GhostBatchNorm, EachGroupIsNormalisedAsABatchOfItsOwn) {
  const Tensor x = make_input({{6, 3, 2, 3}}, 1, DType::f64, Device::cpu());
  const Tensor gamma = make_input({{3}, 0.5, 1.5}, 2, DType::f64, Device::cpu());
  const Tensor beta = make_input({{3}}, 3, DType::f64, Device::cpu());
  Stats ghost;
  const Tensor y = batchnorm2d(x, gamma, beta, ghost.mean, ghost.var, train_options(3, GhostRunningStats::FirstGroup));
  for (int64_t g = 0; g < 3; ++g) {
    Stats own;
    const Tensor yg = batchnorm2d(x.slice(0, 2 * g, 2 * g + 2), gamma, beta, own.mean, own.var, {});
    EXPECT_TRUE(all_close(y.slice(0, 2 * g, 2 * g + 2), yg, 0, 0)) << "group " << g;
    if (g == 0) {
      // The running statistics follow the first group only (rank 0's buffers, METHOD.md O12).
      EXPECT_TRUE(all_close(ghost.mean, own.mean, 0, 0));
      EXPECT_TRUE(all_close(ghost.var, own.var, 0, 0));
    }
  }
  // Not the whole batch's statistics: the groups differ from each other.
  Stats whole;
  const Tensor y_whole = batchnorm2d(x, gamma, beta, whole.mean, whole.var, {});
  EXPECT_FALSE(all_close(y, y_whole, 1e-3, 0));
}

TEST(GhostBatchNorm, AverageRuleAveragesTheGroupsUpdates) {
  const Tensor x = make_input({{4, 3, 3, 3}}, 4, DType::f64, Device::cpu());
  const Tensor gamma = Tensor::ones({3}, DType::f64), beta = Tensor::zeros({3}, DType::f64);
  Stats ghost, first, second;
  batchnorm2d(x, gamma, beta, ghost.mean, ghost.var, train_options(2, GhostRunningStats::Average));
  batchnorm2d(x.slice(0, 0, 2), gamma, beta, first.mean, first.var, {});
  batchnorm2d(x.slice(0, 2, 4), gamma, beta, second.mean, second.var, {});
  const std::vector<double> m = ghost.mean.to_vector<double>(), v = ghost.var.to_vector<double>();
  const std::vector<double> m0 = first.mean.to_vector<double>(), m1 = second.mean.to_vector<double>();
  const std::vector<double> v0 = first.var.to_vector<double>(), v1 = second.var.to_vector<double>();
  for (size_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(m[c], 0.5 * (m0[c] + m1[c]), 1e-15);
    EXPECT_NEAR(v[c], 0.5 * (v0[c] + v1[c]), 1e-15);
  }
}

TEST(GhostBatchNorm, GradientsOfGammaAndBetaSumOverTheGroups) {
  const Tensor x = make_input({{4, 2, 2, 2}}, 5, DType::f64, Device::cpu());
  Tensor gamma = make_input({{2}, 0.5, 1.5}, 6, DType::f64, Device::cpu());
  Tensor beta = make_input({{2}}, 7, DType::f64, Device::cpu());
  const Tensor seed = make_input({{4, 2, 2, 2}}, 8, DType::f64, Device::cpu());
  gamma.requires_grad_(true);
  beta.requires_grad_(true);
  batchnorm2d(x, gamma, beta, Tensor(), Tensor(), train_options(2, GhostRunningStats::FirstGroup)).backward(seed);
  std::vector<double> dgamma(2, 0.0), dbeta(2, 0.0);
  for (int64_t g = 0; g < 2; ++g) {
    Tensor gg = gamma.detach().clone().requires_grad_(true), bg = beta.detach().clone().requires_grad_(true);
    batchnorm2d(x.slice(0, 2 * g, 2 * g + 2), gg, bg, Tensor(), Tensor(), {}).backward(seed.slice(0, 2 * g, 2 * g + 2));
    for (size_t c = 0; c < 2; ++c) {
      dgamma[c] += gg.grad().to_vector<double>()[c];
      dbeta[c] += bg.grad().to_vector<double>()[c];
    }
  }
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_NEAR(gamma.grad().to_vector<double>()[c], dgamma[c], 1e-12);
    EXPECT_NEAR(beta.grad().to_vector<double>()[c], dbeta[c], 1e-12);
  }
}

TEST(GhostBatchNorm, EvalIgnoresTheGroups) {
  const Tensor x = make_input({{3, 3, 2, 2}}, 9, DType::f64, Device::cpu());
  const Tensor gamma = Tensor::ones({3}, DType::f64), beta = Tensor::zeros({3}, DType::f64);
  Stats a, b;
  BatchNormOptions eval;
  eval.training = false;
  BatchNormOptions eval_ghost = eval;
  eval_ghost.groups = 2;  // does not divide 3: irrelevant in eval
  EXPECT_TRUE(all_close(batchnorm2d(x, gamma, beta, a.mean, a.var, eval_ghost),
                        batchnorm2d(x, gamma, beta, b.mean, b.var, eval), 0, 0));
}

TEST(GhostBatchNorm, GroupsThatDoNotDivideTheBatchAreRefused) {
  const Tensor x = Tensor::zeros({6, 2, 2, 2}, DType::f64);
  const Tensor gamma = Tensor::ones({2}, DType::f64), beta = Tensor::zeros({2}, DType::f64);
  try {
    batchnorm2d(x, gamma, beta, Tensor(), Tensor(), train_options(4, GhostRunningStats::FirstGroup));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4 ghost groups must divide the batch of 6 images"), std::string::npos)
        << e.what();
  }
}

TEST(GhostBatchNorm, CudaMatchesCpuPerGroup) {
  SKIP_WITHOUT_CUDA();
  const Tensor x = make_input({{8, 4, 3, 3}}, 10, DType::f32, Device::cpu());
  const Tensor gamma = make_input({{4}, 0.5, 1.5}, 11, DType::f32, Device::cpu());
  const Tensor beta = make_input({{4}}, 12, DType::f32, Device::cpu());
  for (GhostRunningStats rule : {GhostRunningStats::FirstGroup, GhostRunningStats::Average}) {
    Tensor mean_cpu = Tensor::zeros({4}), var_cpu = Tensor::ones({4});
    Tensor mean_gpu = mean_cpu.to(Device::cuda()), var_gpu = var_cpu.to(Device::cuda());
    const Tensor y_cpu = batchnorm2d(x, gamma, beta, mean_cpu, var_cpu, train_options(4, rule));
    const Tensor y_gpu = batchnorm2d(x.to(Device::cuda()), gamma.to(Device::cuda()), beta.to(Device::cuda()),
                                     mean_gpu, var_gpu, train_options(4, rule));
    EXPECT_TRUE(all_close(y_gpu, y_cpu, 1e-5, 1e-5));
    EXPECT_TRUE(all_close(mean_gpu, mean_cpu, 1e-6, 1e-6));
    EXPECT_TRUE(all_close(var_gpu, var_cpu, 1e-6, 1e-6));
  }
}

}  // namespace
}  // namespace engine::testing
