// test_optimizer.cpp - the learning-rate schedules against METHOD.md 12.6, Sgd over a flat model
// (PyTorch's update rule by hand, and its state through a checkpoint's names), and Lars over a
// small model against the LARS fixture (tools/make_lars_fixtures.py), its exclusions and its state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>

#include "engine/autograd.h"
#include "engine/serialize.h"
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

// ------------------------------------------------------------------ Lars

// The model of the LARS fixture: Sequential(Conv2d(3, 8, 3), BatchNorm2d(8), Linear(8, 10)), flat.
struct LarsModel {
  Generator gen{3};
  Sequential model{{std::make_shared<Conv2d>(3, 8, 3, 1, 1, gen), std::make_shared<BatchNorm2d>(8),
                    std::make_shared<Linear>(8, 10, gen)}};
  explicit LarsModel(DType dtype) {
    model.to(dtype);
    model.flatten_parameters();
  }
  // Each parameter (or its gradient) from the same segment of a flat fixture row.
  void set(const Tensor& flat_row, const std::vector<int64_t>& offsets, bool gradients) {
    NoGradGuard no_grad;
    const NamedTensors params = model.named_parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      const Tensor& p = params[k].second;
      Tensor target = gradients ? p.grad() : p;
      target.copy_(flat_row.slice(0, offsets[k], offsets[k] + p.numel()).reshape(p.shape()));
    }
  }
};

const SafetensorsFile& lars_fixture() {
  static const SafetensorsFile f =
      load_safetensors(std::string(ENGINE_TEST_FIXTURES) + "/optimizer/lars_steps.safetensors");
  return f;
}

Tensor fixture_row(const Tensor& t, int64_t row) { return t.slice(0, row, row + 1).reshape({t.size(1)}); }

// |actual - expected| <= 16 u max|expected|, u = 2^-24 (f32) or 2^-53 (f64): the tolerance of
// tests/ops/test_lars_step.cpp's fixture test, per tensor.
::testing::AssertionResult close_in_tensor_ulps(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> e = expected.to_vector<double>();
  double scale = 0.0;
  for (double v : e) scale = std::max(scale, std::fabs(v));
  const double u = actual.dtype() == DType::f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24);
  return testing::all_close(actual, expected, 16 * u * scale, 0.0);
}

TEST(Lars, ExcludesExactlyTheOneDimensionalParameters) {
  // SimCLR excludes BatchNorm's parameters and biases from weight decay and adaptation; here they
  // are the parameters with one dimension, and the fixture's `adapted` says the same per tensor.
  LarsModel tiny(DType::f64);
  Lars lars(tiny.model, {});
  std::vector<std::string> names;
  for (const auto& [name, p] : tiny.model.named_parameters()) names.push_back(name);
  std::stringstream fixture_names(lars_fixture().metadata.at("names"));
  for (const std::string& name : names) {
    std::string fixture_name;
    std::getline(fixture_names, fixture_name, ',');
    EXPECT_EQ(name, fixture_name);
  }
  const std::vector<int64_t> fixture_adapted = lars_fixture().at("adapted").to_vector<int64_t>();
  ASSERT_EQ(lars.plan().segments().size(), names.size());
  for (size_t k = 0; k < names.size(); ++k)
    EXPECT_EQ(lars.plan().segments()[k].adapted, fixture_adapted[k] != 0) << names[k];
  EXPECT_TRUE(lars.plan().segments()[0].adapted) << "the convolution weight";
  EXPECT_FALSE(lars.plan().segments()[1].adapted) << "BatchNorm's weight";
  EXPECT_FALSE(lars.plan().segments()[4].adapted) << "the Linear bias";
}

TEST(Lars, FollowsTheFixturesRuleOnAFlatModel) {
  // The model's own flat layout, the fixture's values put in by name: 5 steps of the "decay"
  // setting (the one where weight decay moves the trust ratios visibly) and SimCLR's, through the
  // Optimizer interface a training loop holds.
  const SafetensorsFile& f = lars_fixture();
  const std::vector<int64_t> offsets = f.at("offsets").to_vector<int64_t>();
  const std::vector<double> lrs = f.at("lr").to_vector<double>();
  for (const auto& [setting, config] :
       {std::pair{std::string("decay"), LarsConfig{0.8, 0.05, 0.02}}, {std::string("simclr"), LarsConfig{}}}) {
    for (const DType dtype : {DType::f64, DType::f32}) {
      const std::string key = setting + (dtype == DType::f64 ? ".f64" : ".f32");
      LarsModel tiny(dtype);
      tiny.set(f.at("params0").to(dtype), offsets, false);
      std::unique_ptr<Optimizer> optimizer = std::make_unique<Lars>(tiny.model, config);
      for (size_t step = 0; step < lrs.size(); ++step) {
        tiny.set(fixture_row(f.at("grads"), step).to(dtype), offsets, true);
        optimizer->step(lrs[step]);
        const NamedTensors params = tiny.model.named_parameters(), state = optimizer->state_dict();
        const Tensor expected_params = fixture_row(f.at(key + ".params"), step);
        const Tensor expected_momentum = fixture_row(f.at(key + ".momentum"), step);
        for (size_t k = 0; k < params.size(); ++k) {
          const int64_t begin = offsets[k], end = begin + params[k].second.numel();
          EXPECT_TRUE(close_in_tensor_ulps(params[k].second.reshape({-1}), expected_params.slice(0, begin, end)))
              << key << " " << params[k].first << " after step " << step + 1;
          EXPECT_TRUE(close_in_tensor_ulps(state[k].second.reshape({-1}), expected_momentum.slice(0, begin, end)))
              << key << " " << state[k].first << " after step " << step + 1;
        }
      }
      EXPECT_EQ(optimizer->steps(), 5);
    }
  }
}

// Gradients that differ per parameter and step.
void set_lars_gradients(LarsModel& m, int step) {
  NoGradGuard no_grad;
  int k = 0;
  for (auto& [name, p] : m.model.named_parameters()) {
    Tensor grad = p.grad();
    grad.copy_(testing::make_input({p.shape(), -0.1, 0.1}, 100 * step + k++, p.dtype(), Device::cpu()));
  }
}

TEST(Lars, StateIsNamedAsSgdsAndRoundTrips) {
  LarsModel a(DType::f64);
  Lars lars(a.model, {});
  Sgd sgd(a.model, {});
  set_lars_gradients(a, 0);
  lars.step(0.3);
  const NamedTensors state = lars.state_dict(), sgd_state = sgd.state_dict();
  ASSERT_EQ(state.size(), 5u);
  for (size_t k = 0; k < state.size(); ++k) {
    EXPECT_EQ(state[k].first, sgd_state[k].first) << "a checkpoint stores either optimizer the same way";
    EXPECT_EQ(state[k].second.shape(), sgd_state[k].second.shape());
  }
  EXPECT_EQ(state[0].first, "momentum_buffer.0.weight");
  EXPECT_EQ(state[2].first, "momentum_buffer.1.bias");
  EXPECT_EQ(state[3].second.shape(), (Shape{10, 8}));

  LarsModel b(DType::f64);
  Lars restored(b.model, {});
  restored.load_state_dict(state, lars.steps());
  EXPECT_TRUE(testing::all_close(restored.momentum_buffer(), lars.momentum_buffer(), 0, 0));
  EXPECT_EQ(restored.steps(), 1);

  NamedTensors broken;  // one buffer missing, one transposed, one unknown
  for (const auto& [name, t] : state) {
    if (name == "momentum_buffer.1.weight") continue;
    broken.emplace_back(name, name == "momentum_buffer.2.weight" ? Tensor::zeros({8, 10}, DType::f64) : t);
  }
  broken.emplace_back("momentum_buffer.extra", Tensor::zeros({1}, DType::f64));
  const std::string what = testing::error_of([&] { restored.load_state_dict(broken, 1); });
  EXPECT_NE(what.find("Lars::load_state_dict"), std::string::npos) << what;
  EXPECT_NE(what.find("missing: momentum_buffer.1.weight"), std::string::npos) << what;
  EXPECT_NE(what.find("momentum_buffer.2.weight: expected shape (10, 8), found (8, 10)"), std::string::npos) << what;
  EXPECT_NE(what.find("unexpected: momentum_buffer.extra"), std::string::npos) << what;
  EXPECT_TRUE(testing::all_close(restored.momentum_buffer(), lars.momentum_buffer(), 0, 0))
      << "a refused state changes nothing";
  EXPECT_THROW(restored.load_state_dict(state, -1), Error) << "negative step count";
}

TEST(Lars, ResumingFromItsStateGivesTheSameNextStepToTheBit) {
  // Two steps, then a checkpoint (model and optimizer state); a fresh model and optimizer loaded
  // from it take the third step exactly as the original does. f32, as training runs.
  LarsModel a(DType::f32);
  Lars lars(a.model, {0.9, 1e-6, 0.001});
  for (int step = 0; step < 2; ++step) {
    set_lars_gradients(a, step);
    lars.step(0.6 + 0.3 * step);
  }
  const NamedTensors model_state = a.model.state_dict(), optimizer_state = lars.state_dict();

  LarsModel b(DType::f32);
  b.model.load_state_dict(model_state);
  Lars resumed(b.model, {0.9, 1e-6, 0.001});
  resumed.load_state_dict(optimizer_state, lars.steps());
  set_lars_gradients(a, 2);
  set_lars_gradients(b, 2);
  lars.step(1.2);
  resumed.step(1.2);
  EXPECT_TRUE(testing::all_close(b.model.flat_parameters(), a.model.flat_parameters(), 0, 0));
  EXPECT_TRUE(testing::all_close(resumed.momentum_buffer(), lars.momentum_buffer(), 0, 0));
  EXPECT_EQ(resumed.steps(), 3);
  const LarsModel untrained(DType::f32);
  EXPECT_NE(a.model.flat_parameters().to_vector<float>(), untrained.model.flat_parameters().to_vector<float>())
      << "the steps moved the parameters";
}

TEST(Lars, RefusesAModelThatIsNotFlat) {
  Generator gen(2);
  Linear model(2, 2, gen);
  const std::string what = testing::error_of([&] { Lars(model, {}); });
  EXPECT_NE(what.find("Lars: the model's parameters must be flat"), std::string::npos) << what;
}

// ------------------------------------------------------------------ the learning rate in memory

TEST(Optimizer, SetLrThenStepIsStepWithTheLearningRate) {
  // set_lr + step() (a captured step's two parts) against step(lr), over changing rates: the same bits.
  TinyModel a, b;
  Sgd sa(a.model, {0.9, 1e-4}), sb(b.model, {0.9, 1e-4});
  for (int step = 0; step < 3; ++step) {
    a.set_gradients(1.0 + step);
    b.set_gradients(1.0 + step);
    sa.step(0.1 / (1 + step));
    sb.set_lr(0.1 / (1 + step));
    EXPECT_EQ(sb.lr_tensor().to_vector<double>(), std::vector<double>{0.1 / (1 + step)});
    sb.step();
  }
  EXPECT_EQ(sb.steps(), 3);
  EXPECT_TRUE(testing::all_close(b.model.flat_parameters(), a.model.flat_parameters(), 0, 0));
  EXPECT_TRUE(testing::all_close(sb.momentum_buffer(), sa.momentum_buffer(), 0, 0));
  // The lr stays until set again: two steps at one rate.
  a.set_gradients(0.5);
  b.set_gradients(0.5);
  sa.step(0.02);
  sa.step(0.02);
  sb.set_lr(0.02);
  sb.step();
  sb.step();
  EXPECT_TRUE(testing::all_close(b.model.flat_parameters(), a.model.flat_parameters(), 0, 0));
}

TEST(Optimizer, SetLrRefusesAValueNoScheduleGivesAndStepNeedsOne) {
  TinyModel tiny;
  Sgd sgd(tiny.model, {});
  std::string what = testing::error_of([&] { sgd.step(); });
  EXPECT_NE(what.find("no learning rate has been set"), std::string::npos) << what;
  for (double bad : {-0.5, std::nan(""), HUGE_VAL}) {
    what = testing::error_of([&] { sgd.set_lr(bad); });
    EXPECT_NE(what.find("finite and >= 0, found"), std::string::npos) << what;
  }
  EXPECT_NE(testing::error_of([&] { sgd.set_lr(-0.5); }).find("-0.5"), std::string::npos);
  EXPECT_EQ(sgd.steps(), 0) << "nothing was stepped";
  LarsModel small(DType::f64);
  Lars lars(small.model, {});
  what = testing::error_of([&] { lars.step(); });
  EXPECT_NE(what.find("Lars::step: no learning rate"), std::string::npos) << what;
  EXPECT_NO_THROW(sgd.set_lr(0.0)) << "a schedule's last rate may be 0";
}

TEST(Optimizer, CudaSetLrAndStepNeverReadTheHost) {
  SKIP_WITHOUT_CUDA();
  // The lr tensor lives with the parameters, set_lr writes it by a fill kernel, and the steps of
  // both optimizers then run without a read back to the host (what a captured step needs).
  Generator gen(4);
  Linear model(3, 2, gen);
  model.to(Device::cuda());
  model.flatten_parameters();
  Tensor grads = model.flat_gradients();
  grads.fill_(0.25);
  Sgd sgd(model, {});
  Lars lars(model, {});
  EXPECT_EQ(sgd.lr_tensor().device(), Device::cuda());
  const uint64_t reads = host_read_count();
  for (Optimizer* optimizer : std::initializer_list<Optimizer*>{&sgd, &lars}) {
    optimizer->set_lr(0.05);
    optimizer->step();
    optimizer->step(0.01);
  }
  EXPECT_EQ(host_read_count(), reads);
  EXPECT_EQ(lars.lr_tensor().to_vector<double>(), std::vector<double>{0.01});
}

}  // namespace
}  // namespace engine::nn
