// test_optimizer.cpp - the learning-rate schedules against METHOD.md 12.6, and Sgd over a flat model:
// PyTorch's update rule by hand, and its state through a checkpoint's names.
#include <gtest/gtest.h>

#include <cmath>

#include "layers/layers.h"
#include "layers/lr_schedule.h"
#include "layers/optimizer.h"
#include "tests/common/test_helpers.h"

namespace engine::nn {
namespace {

TEST(LrSchedule, CosinePerEpochMatchesTheSpecVectors) {
  LrSchedule s{0.015, 200, LrScheduleKind::Cosine};
  EXPECT_DOUBLE_EQ(s.at(0), 0.015);
  EXPECT_NEAR(s.at(1), 0.014999075, 1e-9);
  EXPECT_NEAR(s.at(50), 0.012803301, 1e-9);
  EXPECT_NEAR(s.at(100), 0.0075, 1e-12);
  EXPECT_NEAR(s.at(150), 0.002196699, 1e-9);
  EXPECT_NEAR(s.at(199), 9.2526e-7, 1e-10);
  EXPECT_EQ(s.at(7, 0, 100), s.at(7, 99, 100)) << "constant within an epoch (O15)";
}

TEST(LrSchedule, CosinePerStepMovesWithinTheEpoch) {
  LrSchedule s{0.015, 200, LrScheduleKind::CosinePerStep};
  const LrSchedule per_epoch{0.015, 200, LrScheduleKind::Cosine};
  EXPECT_DOUBLE_EQ(s.at(3, 0, 10), per_epoch.at(3));
  EXPECT_NEAR(s.at(99, 5, 10), 0.015 * 0.5 * (1 + std::cos(M_PI * 99.5 / 200)), 1e-15);
  EXPECT_LT(s.at(3, 9, 10), s.at(3, 1, 10));
}

TEST(LrSchedule, StepMilestonesMatchLinearEvaluation) {
  LrSchedule s{30.0, 100, LrScheduleKind::Steps, {60, 80}};
  EXPECT_DOUBLE_EQ(s.at(0), 30.0);
  EXPECT_DOUBLE_EQ(s.at(59), 30.0);
  EXPECT_NEAR(s.at(60), 3.0, 1e-12);
  EXPECT_NEAR(s.at(79), 3.0, 1e-12);
  EXPECT_NEAR(s.at(80), 0.3, 1e-12);
  EXPECT_NEAR(s.at(99), 0.3, 1e-12);
  EXPECT_EQ(s.describe(), "step 60,80");
}

// A Linear(3 -> 2) in f64, flat, with hand-set weights and gradients.
struct TinyModel {
  Generator gen{1};
  Linear model{3, 2, gen};
  TinyModel() {
    model.to(DType::f64);
    model.flatten_parameters();
  }
  void set_gradients(double scale) {
    for (auto& [name, p] : model.named_parameters()) {
      std::vector<double> g(static_cast<size_t>(p.numel()));
      for (size_t i = 0; i < g.size(); ++i) g[i] = scale * (static_cast<double>(i) - 1.5);
      Tensor grad = p.grad();
      grad.copy_(Tensor::from_vector(g, p.shape()));
    }
  }
};

TEST(Sgd, FollowsPyTorchsRuleWhenTheLearningRateChanges) {
  TinyModel tiny;
  const std::vector<double> p0 = tiny.model.weight.to_vector<double>();
  Sgd sgd(tiny.model, {0.9, 1e-4});
  std::vector<double> p = p0, buf(p0.size(), 0.0);
  const double lrs[] = {0.1, 0.05, 0.01};
  for (int step = 0; step < 3; ++step) {
    tiny.set_gradients(1.0 + step);
    sgd.step(lrs[step]);
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = (1.0 + step) * (static_cast<double>(i) - 1.5) + 1e-4 * p[i];
      buf[i] = step == 0 ? g : 0.9 * buf[i] + g;
      p[i] -= lrs[step] * buf[i];
    }
  }
  EXPECT_EQ(sgd.steps(), 3);
  const std::vector<double> got = tiny.model.weight.to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(got[i], p[i], 1e-15) << i;
}

TEST(Sgd, StateRoundTripsByParameterName) {
  TinyModel a, b;
  Sgd sa(a.model, {}), sb(b.model, {});
  a.set_gradients(1.0);
  sa.step(0.1);
  const NamedTensors state = sa.state_dict();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].first, "momentum_buffer.weight");
  EXPECT_EQ(state[1].first, "momentum_buffer.bias");
  EXPECT_EQ(state[0].second.shape(), (Shape{2, 3}));
  sb.load_state_dict(state, sa.steps());
  EXPECT_TRUE(testing::all_close(sb.momentum_buffer(), sa.momentum_buffer(), 0, 0));
  EXPECT_EQ(sb.steps(), 1);

  NamedTensors broken = state;
  broken.pop_back();
  broken.emplace_back("momentum_buffer.extra", Tensor::zeros({1}, DType::f64));
  try {
    sb.load_state_dict(broken, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("missing: momentum_buffer.bias"), std::string::npos) << what;
    EXPECT_NE(what.find("unexpected: momentum_buffer.extra"), std::string::npos) << what;
  }
}

TEST(Sgd, RefusesAModelThatIsNotFlat) {
  Generator gen(2);
  Linear model(2, 2, gen);
  EXPECT_THROW(Sgd(model, {}), Error);
}

}  // namespace
}  // namespace engine::nn
