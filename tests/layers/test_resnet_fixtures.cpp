// test_resnet_fixtures.cpp - the engine's ResNet-18 and ResNet-50 against PyTorch/torchvision on
// the same weights and inputs (tests/fixtures/, written by tools/make_resnet_fixtures.py): eval
// and train logits, every module's output, parameter gradients, BatchNorm running statistics.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "layers/resnet.h"
#include "ops/elementwise_binary.h"
#include "ops/reduce_dim.h"
#include "tests/common/test_helpers.h"
#include "tests/layers/fixture_weights.h"

namespace engine::testing {
namespace {

// max |actual - expected| / max |expected|: the relative error the bounds below are stated in.
double relative_error(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  EXPECT_EQ(a.size(), e.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < e.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - e[i]));
    scale = std::max(scale, std::fabs(e[i]));
  }
  return diff / std::max(scale, 1e-30);
}

double l2_norm(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v * v;
  return std::sqrt(s);
}

double total(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v;
  return s;
}

// One run of the comparison: an architecture, and the dtype the engine computes in. The reference
// is PyTorch in float64. In f64 the engine must agree to the f32 rounding of the stored reference;
// in f32 the tolerances are those of f32 arithmetic on this problem (see the constants below).
struct FixtureRun {
  std::string arch;
  DType dtype;
  double logits_tol, module_tol, grad_tol, stats_tol;
  Device device = Device::cpu();
};

class ResNetFixture : public ::testing::TestWithParam<FixtureRun> {
 protected:
  void SetUp() override {
    if (GetParam().device.is_cuda()) SKIP_WITHOUT_CUDA();
    ref_ = load_safetensors(fixture_path(GetParam().arch + "_64px.safetensors"));
    nn::ResNetConfig config;
    config.arch = GetParam().arch;
    config.num_classes = 10;
    model_ = nn::make_resnet(config, 1);
    model_->load_state_dict(fixture_state_dict(*model_), true);
    model_->to(GetParam().dtype);
    model_->to(GetParam().device);
    input_ = fixture_tensor("input0", {2, 3, 64, 64}, GetParam().dtype).to(GetParam().device);
  }
  SafetensorsFile ref_;
  std::shared_ptr<nn::ResNet> model_;
  Tensor input_;
};

TEST_P(ResNetFixture, InputsAreRecomputedBitForBit) {
  EXPECT_EQ(input_.to(DType::f32).to_vector<float>(), ref_.at("input0").to_vector<float>());
}

TEST_P(ResNetFixture, EvalForwardMatchesTorchvisionModuleByModule) {
  std::vector<std::pair<std::string, Tensor>> outputs;
  for (auto& [path, module] : model_->named_modules()) {
    if (path.empty() || std::string(module->type_name()) == "ReLU") continue;
    module->output_hook = [&outputs, path = path](const Tensor& y) { outputs.emplace_back(path, y.detach()); };
  }
  model_->eval();
  Tensor logits;
  {
    NoGradGuard no_grad;
    logits = (*model_)(input_);
  }
  const FixtureRun& run = GetParam();
  EXPECT_LT(relative_error(logits, ref_.at("eval.logits")), run.logits_tol);
  size_t checked = 0;
  for (const auto& [path, y] : outputs) {
    ASSERT_TRUE(ref_.contains("eval.norm." + path)) << path << " is a module torchvision does not have";
    const double norm = ref_.at("eval.norm." + path).item(), sum = ref_.at("eval.sum." + path).item();
    EXPECT_NEAR(l2_norm(y), norm, run.module_tol * norm) << path;
    EXPECT_NEAR(total(y), sum, run.module_tol * (std::fabs(sum) + norm)) << path;
    ++checked;
  }
  size_t expected = 0;
  for (const auto& [name, t] : ref_.tensors) expected += name.rfind("eval.norm.", 0) == 0;
  EXPECT_EQ(checked, expected) << "every module torchvision reports was seen once";
}

TEST_P(ResNetFixture, TrainForwardBackwardAndRunningStatisticsMatchTorchvision) {
  const FixtureRun& run = GetParam();
  model_->train();
  model_->flatten_parameters();
  model_->zero_grad();
  const Tensor logits = (*model_)(input_);
  EXPECT_LT(relative_error(logits, ref_.at("train.logits")), run.logits_tol);
  sum(mul(logits, fixture_tensor("loss_weight", logits.shape(), run.dtype).to(run.device))).backward();  // as the fixture script
  // Per tensor in f64; in f32 as one vector over all parameters (see the tolerances below).
  int full = 0;
  double diff_sq = 0, ref_sq = 0;
  for (const auto& [name, p] : model_->named_parameters()) {
    const Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << name;
    const double norm = ref_.at("gradnorm." + name).item(), actual_norm = l2_norm(g);
    diff_sq += (actual_norm - norm) * (actual_norm - norm);
    ref_sq += norm * norm;
    if (run.dtype == DType::f64) {
      EXPECT_NEAR(actual_norm, norm, run.grad_tol * norm) << name;
    }
    if (!ref_.contains("grad." + name)) continue;
    ++full;
    if (run.dtype == DType::f64) {
      EXPECT_LT(relative_error(g, ref_.at("grad." + name)), run.grad_tol) << name;
    }
    const std::vector<double> a = g.to_vector<double>(), e = ref_.at("grad." + name).to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i) {
      diff_sq += (a[i] - e[i]) * (a[i] - e[i]);
      ref_sq += e[i] * e[i];
    }
  }
  EXPECT_LT(std::sqrt(diff_sq / ref_sq), run.grad_tol) << "all gradients as one vector";
  EXPECT_GT(full, 20) << "the fixture holds full gradients of the small parameters";

  {
    NoGradGuard no_grad;
    (*model_)(fixture_tensor("input1", {2, 3, 64, 64}, run.dtype).to(run.device));
    (*model_)(fixture_tensor("input2", {2, 3, 64, 64}, run.dtype).to(run.device));
  }
  int stats = 0;
  for (const auto& [name, b] : model_->named_buffers()) {
    if (!ref_.contains("after3." + name)) continue;
    EXPECT_LT(relative_error(b, ref_.at("after3." + name)), run.stats_tol) << name;
    ++stats;
  }
  EXPECT_GT(stats, 40);
  EXPECT_EQ(model_->child("bn1").state_dict().back().second.item(), 3.0) << "num_batches_tracked";
}

// float64: the engine against PyTorch float64 on every value, to the f32 rounding of the stored
// reference (6e-8) with margin: 1e-6. This is the check of the formulas.
// float32: logits, module outputs and running statistics to 1e-4. Some gradients are
// ill-conditioned here (train-mode BatchNorm backward cancels most of their signal), so f32
// rounding is amplified tensor by tensor: against float64, PyTorch's own f32 gradients err by up
// to 4% (oneDNN) and 23% (its plain im2col path, layer3.5.bn3.weight of ResNet-50) on these
// weights, measured on this machine, and the engine's like the latter. In f32 the gradients are
// therefore compared as one vector over all parameters (the engine: 0.73% for ResNet-50, dominated
// by the early layers PyTorch f32 also misses by 0.5-2%), to 2e-2; per tensor only in f64.
INSTANTIATE_TEST_SUITE_P(Torchvision, ResNetFixture,
                         ::testing::Values(FixtureRun{"resnet18", DType::f64, 1e-6, 1e-6, 1e-6, 1e-6},
                                           FixtureRun{"resnet50", DType::f64, 1e-6, 1e-6, 1e-6, 1e-6},
                                           FixtureRun{"resnet18", DType::f32, 1e-4, 1e-4, 2e-2, 1e-4},
                                           FixtureRun{"resnet50", DType::f32, 1e-4, 1e-4, 2e-2, 1e-4}),
                         [](const ::testing::TestParamInfo<FixtureRun>& info) {
                           return info.param.arch + "_" + std::string(dtype_name(info.param.dtype));
                         });

// CUDA (cuDNN convolutions, cuBLAS, our kernels) against the same float64 reference, with the f32
// tolerances above: the whole network forward, backward and running statistics on the GPU.
INSTANTIATE_TEST_SUITE_P(CudaTorchvision, ResNetFixture,
                         ::testing::Values(FixtureRun{"resnet18", DType::f32, 1e-4, 1e-4, 2e-2, 1e-4, Device::cuda()},
                                           FixtureRun{"resnet50", DType::f32, 1e-4, 1e-4, 2e-2, 1e-4, Device::cuda()}),
                         [](const ::testing::TestParamInfo<FixtureRun>& info) {
                           return info.param.arch + "_cuda_" + std::string(dtype_name(info.param.dtype));
                         });

}  // namespace
}  // namespace engine::testing
