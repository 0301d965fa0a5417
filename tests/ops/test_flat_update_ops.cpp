// test_flat_update_ops.cpp - the ops MoCo runs over flat buffers and batches of rows:
// momentum_update and sgd_step (no gradient, so checked here against hand computations and
// PyTorch's own results, to the bit) and index_select (shuffle-BN's permutation).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "engine/autograd.h"
#include "engine/serialize.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

std::string optimizer_fixture(const std::string& file) {
  return std::string(ENGINE_TEST_FIXTURES) + "/optimizer/" + file;
}

// A learning rate as the optimizer ops read it: one f64 on the buffers' device.
Tensor lr_tensor(double lr, Device device = Device::cpu()) { return Tensor::full({1}, lr, DType::f64, device); }

// Row `row` of a 2-D fixture tensor as a 1-D copy.
Tensor fixture_row(const Tensor& t, int64_t row) { return t.slice(0, row, row + 1).reshape({t.size(1)}).clone(); }

// Bit-for-bit equality of two f32 tensors, naming the first element that differs.
::testing::AssertionResult same_bits(const Tensor& actual, const Tensor& expected) {
  const std::vector<float> a = actual.to_vector<float>(), e = expected.to_vector<float>();
  if (a.size() != e.size()) return ::testing::AssertionFailure() << a.size() << " values against " << e.size();
  int64_t differing = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &e[i], sizeof(float)) != 0) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++differing;
    }
  }
  if (differing == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << differing << " of " << a.size() << " values differ; the first at " << first
                                       << ": " << a[first] << " against " << e[first] << " (difference "
                                       << a[first] - e[first] << ")";
}

int32_t float_bits(float v) {
  int32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

Tensor sequence(const Shape& shape, DType dtype = DType::f32) {
  std::vector<double> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape).to(dtype);
}

// ------------------------------------------------------------------ momentum_update

TEST(MomentumUpdate, ZeroKeyOneQueryGivesOneThousandthAfterOneUpdate) {
  // METHOD.md 12.6 #28. In f32 the result is float(1 - 0.999), which is float(0.001) exactly.
  Tensor key = Tensor::zeros({7}), query = Tensor::ones({7});
  momentum_update(key, query, 0.999);
  for (float v : key.to_vector<float>()) EXPECT_EQ(v, 0.001f);

  Tensor key64 = Tensor::zeros({3}, DType::f64), query64 = Tensor::ones({3}, DType::f64);
  momentum_update(key64, query64, 0.999);
  for (double v : key64.to_vector<double>()) EXPECT_NEAR(v, 0.001, 1e-15);
}

TEST(MomentumUpdate, AfterNUpdatesTheKeyIsOneMinusMToTheN) {
  // theta_k = 1 - 0.999^n with theta_q = 1 fixed. f32: the rounded weights and sums drift by at
  // most 3.6e-6 over 5000 updates (worst at n ~ 1500, measured), so 1e-5; f64: 1e-12.
  Tensor key = Tensor::zeros({5}), query = Tensor::ones({5});
  Tensor key64 = Tensor::zeros({5}, DType::f64), query64 = Tensor::ones({5}, DType::f64);
  for (int n = 1; n <= 2000; ++n) {
    momentum_update(key, query, 0.999);
    momentum_update(key64, query64, 0.999);
    const double expected = 1.0 - std::pow(0.999, n);
    if (n % 100 == 0 || n < 5) {
      ASSERT_NEAR(key.to_vector<float>()[4], expected, 1e-5) << "after " << n << " updates";
      ASSERT_NEAR(key64.to_vector<double>()[4], expected, 1e-12) << "after " << n << " updates";
    }
  }
}

TEST(MomentumUpdate, EqualKeyAndQueryIsANoOpInF64AndWithinOneUlpInF32) {
  // In exact arithmetic k m + k (1 - m) = k (METHOD.md: the first update after initialisation is a
  // no-op). f64 keeps that on every value tried; in f32, float(0.999) + float(0.001) exceeds 1 by
  // 6e-8, so some values move by one ulp, as they do in PyTorch.
  Tensor base = make_input({{4096}, -2.0, 2.0}, 7, DType::f64, Device::cpu());
  Tensor key64 = base.clone();
  momentum_update(key64, key64, 0.999);
  EXPECT_TRUE(all_close(key64, base, 0, 0)) << "f64: key == query must be left unchanged";

  Tensor key = base.to(DType::f32), before = key.clone();
  momentum_update(key, key, 0.999);
  const std::vector<float> after_v = key.to_vector<float>(), before_v = before.to_vector<float>();
  int moved = 0;
  for (size_t i = 0; i < after_v.size(); ++i) {
    const int32_t ulps = std::abs(float_bits(after_v[i]) - float_bits(before_v[i]));
    EXPECT_LE(ulps, 1) << "at " << i << ": " << before_v[i] << " became " << after_v[i];
    moved += ulps != 0;
  }
  EXPECT_GT(moved, 0) << "f32 rounding is expected to move some values by one ulp";
}

TEST(MomentumUpdate, MatchesPyTorchToTheBit) {
  // tools/make_optimizer_fixtures.py: `param_k.data * m + param_q.data * (1. - m)`, m = 0.999.
  const SafetensorsFile f = load_safetensors(optimizer_fixture("momentum_update.safetensors"));
  ASSERT_EQ(f.metadata.at("m"), "0.999");
  Tensor key = f.at("key0").clone();
  for (int64_t u = 0; u < f.at("queries").size(0); ++u) {
    momentum_update(key, fixture_row(f.at("queries"), u), 0.999);
    EXPECT_TRUE(same_bits(key, fixture_row(f.at("keys"), u))) << "after update " << u + 1;
  }
}

TEST(MomentumUpdate, QueryOverlappingTheKeyIsReadBeforeItIsWritten) {
  // key = buffer[0, 8), query = buffer[1, 9): a naive in-place loop would read updated values.
  Tensor buffer = sequence({9});
  Tensor key = buffer.slice(0, 0, 8), query = buffer.slice(0, 1, 9);
  Tensor expected_key = key.clone();
  momentum_update(expected_key, query.clone(), 0.5);
  momentum_update(key, query, 0.5);
  EXPECT_TRUE(same_bits(key, expected_key));
}

TEST(MomentumUpdate, RefusesWhatItCannotUpdate) {
  Tensor key = Tensor::zeros({4, 3});
  EXPECT_THROW(momentum_update(key, Tensor::zeros({3, 4}), 0.9), Error) << "shape";
  EXPECT_THROW(momentum_update(key, Tensor::zeros({4, 3}, DType::f64), 0.9), Error) << "dtype";
  EXPECT_THROW(momentum_update(key, Tensor::zeros({4, 3}), 1.5), Error) << "m above 1";
  EXPECT_THROW(momentum_update(key, Tensor::zeros({4, 3}), -0.1), Error) << "m below 0";
  Tensor transposed = Tensor::zeros({3, 4}).transpose(0, 1);
  EXPECT_THROW(momentum_update(transposed, Tensor::zeros({4, 3}), 0.9), Error) << "key not contiguous";
  Tensor ints = Tensor::zeros({4, 3}, DType::i32);
  EXPECT_THROW(momentum_update(ints, Tensor::zeros({4, 3}, DType::i32), 0.9), Error) << "integer dtype";
  Tensor leaf = Tensor::zeros({4, 3});
  leaf.requires_grad_(true);
  EXPECT_THROW(momentum_update(leaf, Tensor::zeros({4, 3}), 0.9), Error) << "requires grad, grad mode on";
  NoGradGuard no_grad;
  EXPECT_NO_THROW(momentum_update(leaf, Tensor::zeros({4, 3}), 0.9));
}

TEST(MomentumUpdate, CudaMatchesCpuToTheBitOnALargeBuffer) {
  SKIP_WITHOUT_CUDA();
  const int64_t n = (1 << 20) + 7;
  Tensor key = make_input({{n}}, 1, DType::f32, Device::cpu()), query = make_input({{n}}, 2, DType::f32, Device::cpu());
  Tensor key_gpu = key.to(Device::cuda()), query_gpu = query.to(Device::cuda());
  for (int u = 0; u < 3; ++u) {
    momentum_update(key, query, 0.999);
    momentum_update(key_gpu, query_gpu, 0.999);
  }
  EXPECT_TRUE(same_bits(key_gpu, key));
}

// ------------------------------------------------------------------ sgd_step

// A one-element f64 run of sgd_step over the given learning rates, constant gradient.
struct SgdRun {
  double param, buffer;
};
SgdRun run_sgd(double param, double grad, const std::vector<double>& lrs, SgdStepOptions opt) {
  Tensor p = Tensor::full({1}, param, DType::f64), g = Tensor::full({1}, grad, DType::f64);
  Tensor buf = Tensor::zeros({1}, DType::f64);
  for (size_t s = 0; s < lrs.size(); ++s) sgd_step(p, g, buf, opt, lr_tensor(lrs[s]), s == 0);
  return {p.item(), buf.item()};
}

TEST(SgdStep, ThreeStepsWithAChangingLearningRateFollowTheBufferForm) {
  // p0 = 1, g = 1, momentum 0.9, no weight decay, lr 0.1, 0.05, 0.02:
  //   step 1: buf = 1                  p = 1 - 0.1 * 1 = 0.9
  //   step 2: buf = 0.9 * 1 + 1 = 1.9  p = 0.9 - 0.05 * 1.9 = 0.805
  //   step 3: buf = 0.9 * 1.9 + 1 = 2.71  p = 0.805 - 0.02 * 2.71 = 0.7508
  // The form v = mu v + lr g, p -= v would give 0.9, 0.76, 0.614 instead (METHOD.md 6.7).
  SgdStepOptions opt;
  opt.weight_decay = 0.0;
  const SgdRun r = run_sgd(1.0, 1.0, {0.1, 0.05, 0.02}, opt);
  EXPECT_NEAR(r.param, 0.7508, 1e-15);
  EXPECT_NEAR(r.buffer, 2.71, 1e-15);
  EXPECT_NEAR(run_sgd(1.0, 1.0, {0.1, 0.05}, opt).param, 0.805, 1e-15);
}

TEST(SgdStep, WeightDecayIsAddedToTheGradientBeforeTheMomentum) {
  // p0 = 2, g = 0.5, wd = 0.1, momentum 0.9, lr 0.1, 0.05, 0.02; d = g + wd p:
  //   step 1: d = 0.7       buf = 0.7                          p = 2 - 0.07 = 1.93
  //   step 2: d = 0.693     buf = 0.63 + 0.693 = 1.323         p = 1.93 - 0.06615 = 1.86385
  //   step 3: d = 0.686385  buf = 1.1907 + 0.686385 = 1.877085 p = 1.86385 - 0.0375417 = 1.8263083
  SgdStepOptions opt;
  opt.weight_decay = 0.1;
  const SgdRun r = run_sgd(2.0, 0.5, {0.1, 0.05, 0.02}, opt);
  EXPECT_NEAR(r.param, 1.8263083, 1e-14);
  EXPECT_NEAR(r.buffer, 1.877085, 1e-14);
}

TEST(SgdStep, NesterovAndDampening) {
  // Nesterov, p0 = 1, g = 1, lr 0.1, 0.05: step 1 buf = 1, d = 1 + 0.9 = 1.9, p = 0.81;
  // step 2 buf = 1.9, d = 1 + 0.9 * 1.9 = 2.71, p = 0.81 - 0.1355 = 0.6745.
  SgdStepOptions nesterov;
  nesterov.weight_decay = 0.0;
  nesterov.nesterov = true;
  EXPECT_NEAR(run_sgd(1.0, 1.0, {0.1, 0.05}, nesterov).param, 0.6745, 1e-15);
  // Dampening 0.1 (not applied at the first step, as PyTorch): buf = 1, then 0.9 + 0.9 = 1.8;
  // p = 0.9, then 0.9 - 0.05 * 1.8 = 0.81.
  SgdStepOptions dampened;
  dampened.weight_decay = 0.0;
  dampened.dampening = 0.1;
  const SgdRun r = run_sgd(1.0, 1.0, {0.1, 0.05}, dampened);
  EXPECT_NEAR(r.buffer, 1.8, 1e-15);
  EXPECT_NEAR(r.param, 0.81, 1e-15);
}

TEST(SgdStep, TheFirstStepIgnoresTheBufferAndLaterStepsReadIt) {
  SgdStepOptions opt;
  opt.weight_decay = 0.0;
  const Tensor lr = lr_tensor(0.5);
  Tensor p = Tensor::full({3}, 1.0, DType::f64), g = Tensor::full({3}, 2.0, DType::f64);
  Tensor buf = Tensor::full({3}, std::nan(""), DType::f64);  // garbage: a fresh buffer's contents
  sgd_step(p, g, buf, opt, lr, true);
  EXPECT_EQ(buf.to_vector<double>(), std::vector<double>(3, 2.0));
  EXPECT_EQ(p.to_vector<double>(), std::vector<double>(3, 0.0));
  buf.fill_(10.0);
  sgd_step(p, g, buf, opt, lr, false);  // buf = 0.9 * 10 + 2 = 11, p = 0 - 0.5 * 11
  EXPECT_EQ(buf.to_vector<double>(), std::vector<double>(3, 11.0));
  EXPECT_EQ(p.to_vector<double>(), std::vector<double>(3, -5.5));
}

TEST(SgdStep, WithoutMomentumNeedsNoBuffer) {
  // p = 4 - 0.25 (1 + 0.5 * 4) = 3.25
  SgdStepOptions opt;
  opt.momentum = 0.0;
  opt.weight_decay = 0.5;
  Tensor p = Tensor::full({2}, 4.0, DType::f64), g = Tensor::full({2}, 1.0, DType::f64), no_buffer;
  sgd_step(p, g, no_buffer, opt, lr_tensor(0.25), true);
  EXPECT_EQ(p.to_vector<double>(), std::vector<double>(2, 3.25));
  EXPECT_FALSE(no_buffer.defined());
}

TEST(SgdStep, UpdatesEveryElementOfABufferOfManyChunks) {
  // The CPU loop runs in chunks of 2^16 elements; 3 chunks and 5 more. p = 4, g = 1, wd = 0.5:
  // buf = 1 + 0.5 * 4 = 3, p = 4 - 0.25 * 3 = 3.25 everywhere.
  const int64_t n = 3 * (1 << 16) + 5;
  SgdStepOptions opt;
  opt.weight_decay = 0.5;
  Tensor p = Tensor::full({n}, 4.0), g = Tensor::full({n}, 1.0), buf = Tensor::empty({n});
  sgd_step(p, g, buf, opt, lr_tensor(0.25), true);
  EXPECT_EQ(p.to_vector<float>(), std::vector<float>(n, 3.25f));
  EXPECT_EQ(buf.to_vector<float>(), std::vector<float>(n, 3.0f));
}

TEST(SgdStep, MatchesPyTorchToTheBit) {
  // torch.optim.SGD (foreach=False), 5 steps with a new gradient and lr each, three settings
  // (tools/make_optimizer_fixtures.py). Bit equality holds because sgd_step fuses exactly where
  // PyTorch's add(alpha=...) fuses; rounding the products separately instead changes ~10% of
  // the values by an ulp (measured on this fixture).
  const SafetensorsFile f = load_safetensors(optimizer_fixture("sgd_steps.safetensors"));
  const std::vector<double> lrs = f.at("lr").to_vector<double>();
  struct Setting {
    std::string name;
    double weight_decay, dampening;
    bool nesterov;
  };
  for (const Setting& s : {Setting{"plain", 1e-4, 0.0, false}, Setting{"nesterov", 1e-4, 0.0, true},
                           Setting{"dampening", 5e-4, 0.1, false}}) {
    SgdStepOptions opt;
    opt.momentum = 0.9;
    opt.weight_decay = s.weight_decay;
    opt.dampening = s.dampening;
    opt.nesterov = s.nesterov;
    Tensor params = f.at("params0").clone();
    Tensor buffer = Tensor::empty(params.shape());
    for (size_t step = 0; step < lrs.size(); ++step) {
      sgd_step(params, fixture_row(f.at("grads"), step), buffer, opt, lr_tensor(lrs[step]), step == 0);
      EXPECT_TRUE(same_bits(params, fixture_row(f.at(s.name + ".params"), step)))
          << s.name << ": params after step " << step + 1;
      EXPECT_TRUE(same_bits(buffer, fixture_row(f.at(s.name + ".momentum_buffer"), step)))
          << s.name << ": momentum buffer after step " << step + 1;
    }
  }
}

TEST(SgdStep, RefusesWhatTorchOptimSgdRefusesAndWhatItCannotWrite) {
  Tensor p = Tensor::zeros({5}), g = Tensor::zeros({5}), buf = Tensor::zeros({5});
  const Tensor lr = lr_tensor(0.1);
  SgdStepOptions opt;
  SgdStepOptions bad = opt;
  bad.momentum = -0.1;
  EXPECT_THROW(sgd_step(p, g, buf, bad, lr, true), Error) << "negative momentum";
  bad = opt;
  bad.nesterov = true;
  bad.dampening = 0.1;
  EXPECT_THROW(sgd_step(p, g, buf, bad, lr, true), Error) << "nesterov with dampening";
  bad = opt;
  bad.nesterov = true;
  bad.momentum = 0.0;
  EXPECT_THROW(sgd_step(p, g, buf, bad, lr, true), Error) << "nesterov without momentum";
  Tensor no_buffer;
  EXPECT_THROW(sgd_step(p, g, no_buffer, opt, lr, true), Error) << "momentum without a buffer";
  EXPECT_THROW(sgd_step(p, Tensor::zeros({4}), buf, opt, lr, true), Error) << "gradient shape";
  Tensor buf64 = Tensor::zeros({5}, DType::f64);
  EXPECT_THROW(sgd_step(p, g, buf64, opt, lr, true), Error) << "buffer dtype";
  EXPECT_THROW(sgd_step(p, g, p, opt, lr, true), Error) << "buffer aliasing the parameters";
  Tensor strided = Tensor::zeros({10}).slice(0, 0, 10, 2);
  EXPECT_THROW(sgd_step(strided, g, buf, opt, lr, true), Error) << "parameters not contiguous";
  EXPECT_NO_THROW(sgd_step(p, Tensor::zeros({10}).slice(0, 0, 10, 2), buf, opt, lr, true))
      << "a strided gradient is read";
  Tensor leaf = Tensor::zeros({5});
  leaf.requires_grad_(true);
  EXPECT_THROW(sgd_step(leaf, g, buf, opt, lr, true), Error) << "parameters requiring grad with grad mode on";
  NoGradGuard no_grad;
  EXPECT_NO_THROW(sgd_step(leaf, g, buf, opt, lr, true));
}

TEST(SgdStep, RefusesALearningRateTensorItCannotRead) {
  Tensor p = Tensor::zeros({5}), g = Tensor::zeros({5}), buf = Tensor::zeros({5});
  const SgdStepOptions opt;
  std::string msg = error_of([&] { sgd_step(p, g, buf, opt, Tensor::full({1}, 0.1), true); });
  EXPECT_NE(msg.find("one-element f64"), std::string::npos) << msg;
  msg = error_of([&] { sgd_step(p, g, buf, opt, Tensor::full({2}, 0.1, DType::f64), true); });
  EXPECT_NE(msg.find("one-element f64"), std::string::npos) << msg;
  msg = error_of([&] { sgd_step(p, g, buf, opt, Tensor(), true); });
  EXPECT_NE(msg.find("lr"), std::string::npos) << msg;
  Tensor p64 = Tensor::zeros({5}, DType::f64), buf64 = Tensor::zeros({5}, DType::f64);
  msg = error_of([&] { sgd_step(p64, Tensor::zeros({5}, DType::f64), buf64, opt, buf64.slice(0, 2, 3), true); });
  EXPECT_NE(msg.find("shares its memory"), std::string::npos) << msg;
  if (cuda_device_count() > 0) {
    msg = error_of([&] { sgd_step(p, g, buf, opt, lr_tensor(0.1, Device::cuda()), true); });
    EXPECT_NE(msg.find("parameters' device"), std::string::npos) << msg;
  }
}

TEST(SgdStep, ReadsTheLearningRateWhenItRunsWithoutAHostRead) {
  // One lr tensor, refilled between steps as nn::Optimizer::set_lr does before a graph replay: each
  // step uses the value in memory when it runs, and no step reads anything back to the host.
  for (Device device : {Device::cpu(), Device::cuda()}) {
    if (device.is_cuda() && cuda_device_count() == 0) continue;
    SgdStepOptions opt;
    opt.weight_decay = 0.0;
    Tensor p = Tensor::full({4}, 1.0, DType::f64, device), g = Tensor::full({4}, 1.0, DType::f64, device);
    Tensor buf = Tensor::zeros({4}, DType::f64, device), lr = lr_tensor(0.1, device);
    const uint64_t reads = host_read_count();
    sgd_step(p, g, buf, opt, lr, true);  // buf = 1, p = 0.9
    lr.fill_(0.05);
    sgd_step(p, g, buf, opt, lr, false);  // buf = 1.9, p = 0.805
    EXPECT_EQ(host_read_count(), reads) << device.str();
    EXPECT_NEAR(p.to_vector<double>()[3], 0.805, 1e-15) << device.str();
  }
}

TEST(SgdStep, CudaMatchesCpuToTheBitOnALargeBuffer) {
  SKIP_WITHOUT_CUDA();
  const int64_t n = (1 << 20) + 5;
  Tensor p = make_input({{n}}, 3, DType::f32, Device::cpu()), g = make_input({{n}, -0.1, 0.1}, 4, DType::f32, Device::cpu());
  Tensor buf = Tensor::zeros({n});
  Tensor p_gpu = p.to(Device::cuda()), g_gpu = g.to(Device::cuda()), buf_gpu = buf.to(Device::cuda());
  SgdStepOptions opt;
  for (int s = 0; s < 3; ++s) {
    const double lr = 0.015 - 0.004 * s;
    sgd_step(p, g, buf, opt, lr_tensor(lr), s == 0);
    sgd_step(p_gpu, g_gpu, buf_gpu, opt, lr_tensor(lr, Device::cuda()), s == 0);
  }
  EXPECT_TRUE(same_bits(p_gpu, p));
  EXPECT_TRUE(same_bits(buf_gpu, buf));
}

// ------------------------------------------------------------------ index_select

TEST(IndexSelect, PicksRowsAndSumsTheGradientOfRepeatedRows) {
  Tensor x = sequence({4, 2});  // rows (0, 1), (2, 3), (4, 5), (6, 7)
  x.requires_grad_(true);
  Tensor out = index_select(x, Tensor::from_vector<int64_t>({2, 0, 2}, {3}));
  EXPECT_EQ(out.shape(), (Shape{3, 2}));
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{4, 5, 0, 1, 4, 5}));
  // dout rows (1, 10), (2, 20), (3, 30): row 2 of x was picked by outputs 0 and 2.
  out.backward(Tensor::from_vector<float>({1, 10, 2, 20, 3, 30}, {3, 2}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 20, 0, 0, 4, 40, 0, 0}));
}

TEST(IndexSelect, APermutationAndItsInverseGiveTheInputBack) {
  // Shuffle-BN: permute the key images, un-permute the keys.
  const std::vector<int64_t> perm = {5, 2, 7, 0, 3, 6, 1, 4};
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  Tensor x = make_input({{8, 3, 2, 2}}, 5, DType::f32, Device::cpu());
  Tensor shuffled = index_select(x, Tensor::from_vector(perm, {8}));
  EXPECT_TRUE(same_bits(shuffled.slice(0, 1, 2), x.slice(0, 2, 3)));
  EXPECT_TRUE(same_bits(index_select(shuffled, Tensor::from_vector(inverse, {8})), x));
}

TEST(IndexSelect, InvertIndexListsThePickersOfEachRowInOrder) {
  const std::vector<int64_t> index = {2, 0, 2, 1, 2};
  std::vector<int64_t> row_starts(5), sources(5);
  invert_index(row_starts.data(), sources.data(), index.data(), 5, 4);
  EXPECT_EQ(row_starts, (std::vector<int64_t>{0, 1, 2, 5, 5}));
  EXPECT_EQ(sources, (std::vector<int64_t>{1, 3, 0, 2, 4}));
}

TEST(IndexSelect, EmptyIndexBf16AndOneDimensionalRows) {
  Tensor empty = index_select(Tensor::zeros({3, 4}), Tensor::zeros({0}, DType::i64));
  EXPECT_EQ(empty.shape(), (Shape{0, 4}));
  Tensor x16 = sequence({3, 2}, DType::bf16);
  EXPECT_EQ(index_select(x16, Tensor::from_vector<int64_t>({1}, {1})).to_vector<float>(), (std::vector<float>{2, 3}));
  EXPECT_EQ(index_select(sequence({5}), Tensor::from_vector<int64_t>({4, 4, 0}, {3})).to_vector<float>(),
            (std::vector<float>{4, 4, 0}));
}

TEST(IndexSelect, RefusesBadIndices) {
  Tensor x = Tensor::zeros({4, 2});
  EXPECT_THROW(index_select(x, Tensor::from_vector<int64_t>({0, 4}, {2})), Error) << "past the last row";
  EXPECT_THROW(index_select(x, Tensor::from_vector<int64_t>({-1}, {1})), Error) << "negative";
  EXPECT_THROW(index_select(x, Tensor::zeros({2}, DType::i32)), Error) << "i32 index";
  EXPECT_THROW(index_select(x, Tensor::zeros({1, 2}, DType::i64)), Error) << "2-D index";
  EXPECT_THROW(index_select(Tensor::full({}, 1.0), Tensor::zeros({1}, DType::i64)), Error) << "0-dim x";
  EXPECT_THROW(index_select(Tensor::zeros({4, 2}, DType::u8), Tensor::zeros({1}, DType::i64)), Error) << "u8 x";
  try {
    index_select(x, Tensor::from_vector<int64_t>({1, 9}, {2}));
    FAIL() << "index 9 of 4 rows";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index[1] = 9"), std::string::npos) << e.what();
  }
}

TEST(IndexSelect, CudaMatchesCpuToTheBitWithRepeats) {
  SKIP_WITHOUT_CUDA();
  std::vector<int64_t> index;
  for (int64_t i = 0; i < 70; ++i) index.push_back((i * 37) % 50);  // 50 rows, 20 of them twice
  Tensor x = make_input({{50, 3, 17, 19}}, 6, DType::f32, Device::cpu());
  Tensor x_gpu = x.to(Device::cuda());
  x.requires_grad_(true);
  x_gpu.requires_grad_(true);
  Tensor out = index_select(x, Tensor::from_vector(index, {70}));
  Tensor out_gpu = index_select(x_gpu, Tensor::from_vector(index, {70}, Device::cuda()));
  EXPECT_TRUE(same_bits(out_gpu, out));
  Tensor seed = make_input({out.shape()}, 7, DType::f32, Device::cpu());
  out.backward(seed);
  out_gpu.backward(seed.to(Device::cuda()));
  EXPECT_TRUE(same_bits(x_gpu.grad(), x.grad()));
  // The same index given on the host, as shuffle BN gives it.
  EXPECT_TRUE(same_bits(index_select(x_gpu.detach(), Tensor::from_vector(index, {70})), out));
}

}  // namespace
}  // namespace engine::testing
