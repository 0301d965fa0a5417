// test_lars_step.cpp - SimCLR's LARS step over flat buffers (ops/lars_step.h): against PyTorch's
// run of the rule (tools/make_lars_fixtures.py), by hand, at zero norms, on excluded segments, the
// plan's checks, and CUDA against the CPU at a small size and at ResNet-50's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/serialize.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

std::string lars_fixture() { return std::string(ENGINE_TEST_FIXTURES) + "/optimizer/lars_steps.safetensors"; }

// A learning rate as lars_step reads it: one f64 on the buffers' device.
Tensor lr_tensor(double lr, Device device = Device::cpu()) { return Tensor::full({1}, lr, DType::f64, device); }

// Row `row` of a 2-D fixture tensor as a 1-D copy.
Tensor fixture_row(const Tensor& t, int64_t row) { return t.slice(0, row, row + 1).reshape({t.size(1)}).clone(); }

std::vector<LarsSegment> fixture_segments(const SafetensorsFile& f) {
  const std::vector<int64_t> offsets = f.at("offsets").to_vector<int64_t>();
  const std::vector<int64_t> lengths = f.at("lengths").to_vector<int64_t>();
  const std::vector<int64_t> adapted = f.at("adapted").to_vector<int64_t>();
  std::vector<LarsSegment> segments;
  for (size_t s = 0; s < offsets.size(); ++s) segments.push_back({offsets[s], lengths[s], adapted[s] != 0});
  return segments;
}

// The number of elements whose bits differ (f32 or f64 tensors of one shape).
int64_t differing_bits(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  int64_t count = 0;
  for (size_t i = 0; i < x.size(); ++i) count += std::memcmp(&x[i], &y[i], sizeof(double)) != 0;
  return count;
}

// ------------------------------------------------------------------ against PyTorch

// Per segment, |actual - expected| <= ulps * u * (the segment's largest |expected|), u the unit
// roundoff of the type (2^-24 for f32, 2^-53 for f64): rounding differences scale with the
// tensor's values, not with each element (an element where mu v and the new step nearly cancel
// keeps the rounding of its operands). Elements outside every segment must be equal.
::testing::AssertionResult segments_close(const Tensor& actual, const Tensor& expected,
                                          const std::vector<LarsSegment>& segments, double ulps) {
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  if (a.size() != e.size()) return ::testing::AssertionFailure() << a.size() << " values against " << e.size();
  const double u = actual.dtype() == DType::f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24);
  std::vector<bool> inside(a.size(), false);
  for (size_t s = 0; s < segments.size(); ++s) {
    const int64_t begin = segments[s].offset, end = begin + segments[s].length;
    double scale = 0.0;
    for (int64_t i = begin; i < end; ++i) scale = std::max(scale, std::fabs(e[i]));
    const double allowed = ulps * u * scale;
    for (int64_t i = begin; i < end; ++i) {
      inside[i] = true;
      if (!(std::fabs(a[i] - e[i]) <= allowed))
        return ::testing::AssertionFailure() << "segment " << s << ", element " << i << ": " << a[i] << " against "
                                             << e[i] << " (difference " << a[i] - e[i] << ", allowed " << allowed
                                             << ")";
    }
  }
  for (size_t i = 0; i < a.size(); ++i)
    if (!inside[i] && a[i] != e[i])
      return ::testing::AssertionFailure() << "element " << i << " outside every segment changed: " << a[i]
                                           << " against " << e[i];
  return ::testing::AssertionSuccess();
}

TEST(LarsStep, MatchesThePyTorchFixture) {
  // 5 steps of a small model's parameters (a conv weight and a Linear weight adapted, BatchNorm's
  // weight and bias and the Linear bias excluded, 16-aligned with gaps holding 7), two settings.
  // f64: PyTorch's norms and ours differ only in summation order, and its v = mu v + s g rounds
  // twice where ours fuses: measured at most 2.6 units of 2^-53 of a tensor's largest value.
  // f32: PyTorch computes the norms in f32 (as TensorFlow), ours accumulate in double, which
  // moves the scaled learning rates by up to a few f32 ulps; with the unfused products, measured
  // at most 3.4 units of 2^-24 of a tensor's largest value. Both are checked at 16 units.
  const SafetensorsFile f = load_safetensors(lars_fixture());
  const std::vector<LarsSegment> segments = fixture_segments(f);
  const std::vector<double> lrs = f.at("lr").to_vector<double>();
  struct Setting {
    std::string name, metadata;
    double momentum, weight_decay, eta;
  };
  for (const Setting& s : {Setting{"simclr", "momentum=0.9,weight_decay=1e-06,eta=0.001", 0.9, 1e-6, 0.001},
                           Setting{"decay", "momentum=0.8,weight_decay=0.05,eta=0.02", 0.8, 0.05, 0.02}}) {
    ASSERT_EQ(f.metadata.at(s.name), s.metadata) << "the fixture's setting changed";
    for (const DType dtype : {DType::f64, DType::f32}) {
      const std::string key = s.name + (dtype == DType::f64 ? ".f64" : ".f32");
      Tensor params = f.at("params0").to(dtype).clone();
      Tensor momentum = Tensor::zeros(params.shape(), dtype);
      const LarsPlan plan(segments, params.numel(), Device::cpu());
      for (size_t step = 0; step < lrs.size(); ++step) {
        const LarsStepOptions opt{s.momentum, s.weight_decay, s.eta};
        lars_step(params, fixture_row(f.at("grads"), step).to(dtype), momentum, plan, opt, lr_tensor(lrs[step]));
        EXPECT_TRUE(segments_close(params, fixture_row(f.at(key + ".params"), step), segments, 16))
            << key << ": params after step " << step + 1;
        EXPECT_TRUE(segments_close(momentum, fixture_row(f.at(key + ".momentum"), step), segments, 16))
            << key << ": momentum after step " << step + 1;
      }
    }
  }
}

// ------------------------------------------------------------------ by hand

TEST(LarsStep, OneAdaptedSegmentByHand) {
  // w = (3, 4), grad = (0.5, -0.4), wd 0.1, eta 0.1, momentum 0.9, lr 0.2 then 0.4, f64.
  // Step 1: g = grad + 0.1 w = (0.8, 0); ||w|| = 5, ||g|| = 0.8, trust = 0.1 * 5 / 0.8 = 0.625,
  //         lr * trust = 0.125, v = (0.1, 0), w = (2.9, 4).
  // Step 2: g = (0.5 + 0.29, -0.4 + 0.4) = (0.79, 0); ||w|| = sqrt(24.41), ||g|| = 0.79,
  //         lr * trust * g = 0.4 * 0.1 * sqrt(24.41) * (1, 0), v = (0.09 + 0.04 sqrt(24.41), 0),
  //         w = (2.9 - v0, 4).
  // Without the weight decay step 1 would use ||grad|| = 0.64 and the direction (0.5, -0.4).
  Tensor w = Tensor::from_vector<double>({3.0, 4.0}, {2}), grad = Tensor::from_vector<double>({0.5, -0.4}, {2});
  Tensor v = Tensor::zeros({2}, DType::f64);
  const std::vector<LarsSegment> one = {{0, 2, true}};
  lars_step(w, grad, v, one, {0.9, 0.1, 0.1}, lr_tensor(0.2));
  EXPECT_NEAR(v.to_vector<double>()[0], 0.1, 1e-16);
  EXPECT_EQ(v.to_vector<double>()[1], 0.0);
  EXPECT_NEAR(w.to_vector<double>()[0], 2.9, 1e-15);
  EXPECT_EQ(w.to_vector<double>()[1], 4.0);
  lars_step(w, grad, v, one, {0.9, 0.1, 0.1}, lr_tensor(0.4));
  const double v0 = 0.09 + 0.04 * std::sqrt(24.41);
  EXPECT_NEAR(v.to_vector<double>()[0], v0, 1e-15);
  EXPECT_NEAR(v.to_vector<double>()[1], 0.0, 1e-17);
  EXPECT_NEAR(w.to_vector<double>()[0], 2.9 - v0, 1e-15);
  EXPECT_NEAR(w.to_vector<double>()[1], 4.0, 1e-15);
}

TEST(LarsStep, ZeroNormsGiveTrustOne) {
  // Three adapted segments, wd 0 (so g = grad), eta 0.5, lr 0.1, momentum 0.9:
  //   [0, 2): w = 0, grad = (1, 2): ||w|| = 0 -> trust 1: v = 0.1 grad, w = -v;
  //   [2, 4): w = (1, 1), grad = 0: ||g|| = 0 -> trust 1, v = 0, w unchanged;
  //   [4, 6): w = 0, grad = 0: nothing moves, and no 0/0 appears.
  // Then a second step with grad = 0 everywhere: v = 0.9 v, w -= v (momentum alone; the segment
  // [0, 2) now has ||w|| > 0 but ||g|| = 0, trust 1 again).
  Tensor w = Tensor::from_vector<double>({0, 0, 1, 1, 0, 0}, {6});
  Tensor grad = Tensor::from_vector<double>({1, 2, 0, 0, 0, 0}, {6});
  Tensor v = Tensor::zeros({6}, DType::f64);
  const std::vector<LarsSegment> segments = {{0, 2, true}, {2, 2, true}, {4, 2, true}};
  const LarsStepOptions opt{0.9, 0.0, 0.5};
  const Tensor lr = lr_tensor(0.1);
  lars_step(w, grad, v, segments, opt, lr);
  EXPECT_EQ(v.to_vector<double>(), (std::vector<double>{0.1, 0.2, 0, 0, 0, 0}));
  EXPECT_EQ(w.to_vector<double>(), (std::vector<double>{-0.1, -0.2, 1, 1, 0, 0}));
  lars_step(w, Tensor::zeros({6}, DType::f64), v, segments, opt, lr);
  const std::vector<double> v2 = v.to_vector<double>(), w2 = w.to_vector<double>();
  EXPECT_NEAR(v2[0], 0.09, 1e-16);
  EXPECT_NEAR(v2[1], 0.18, 1e-16);
  EXPECT_NEAR(w2[0], -0.19, 1e-16);
  EXPECT_NEAR(w2[1], -0.38, 1e-16);
  EXPECT_EQ(std::vector<double>(w2.begin() + 2, w2.end()), (std::vector<double>{1, 1, 0, 0}));
}

TEST(LarsStep, ExcludedSegmentsAreMomentumSgdWithoutWeightDecay) {
  // A large weight decay and eta that would change an adapted segment do nothing to an excluded
  // one: v = mu v + lr grad, w -= v, element by element (the same fused rounding: to the bit).
  const int64_t n = 37;
  Tensor w = make_input({{n}}, 1, DType::f64, Device::cpu()), v = Tensor::zeros({n}, DType::f64);
  std::vector<double> w_ref = w.to_vector<double>(), v_ref(n, 0.0);
  const std::vector<LarsSegment> excluded = {{0, n, false}};
  const double lrs[] = {0.5, 0.25, 1.0};
  for (int step = 0; step < 3; ++step) {
    const Tensor grad = make_input({{n}}, 10 + step, DType::f64, Device::cpu());
    lars_step(w, grad, v, excluded, {0.9, 0.5, 3.0}, lr_tensor(lrs[step]));
    const std::vector<double> g = grad.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      v_ref[i] = std::fma(g[i], lrs[step], v_ref[i] * 0.9);
      w_ref[i] -= v_ref[i];
    }
  }
  EXPECT_EQ(v.to_vector<double>(), v_ref);
  EXPECT_EQ(w.to_vector<double>(), w_ref);
}

TEST(LarsStep, ElementsOutsideEverySegmentAreNotTouched) {
  // Segments [2, 5) and [9, 10) of 12 elements; the rest stays as it was, in params and momentum.
  Tensor w = Tensor::full({12}, 3.0), grad = Tensor::full({12}, std::nan("")), v = Tensor::full({12}, -1.0);
  for (int64_t i : {2, 3, 4, 9}) grad.slice(0, i, i + 1).fill_(0.5);
  lars_step(w, grad, v, {{2, 3, true}, {9, 1, false}}, {0.9, 1e-4, 0.01}, lr_tensor(0.1));
  const std::vector<float> wv = w.to_vector<float>(), vv = v.to_vector<float>();
  for (int64_t i : {0, 1, 5, 6, 7, 8, 10, 11}) {
    EXPECT_EQ(wv[i], 3.0f) << i;
    EXPECT_EQ(vv[i], -1.0f) << i;
  }
  for (int64_t i : {2, 3, 4, 9}) EXPECT_NE(wv[i], 3.0f) << i;
}

TEST(LarsStep, TheChunkSizeOnlyChangesTheNormsSummationOrder) {
  // The same segments cut into chunks of 1, 7, 64 and the default (one chunk per segment here):
  // f64 results within rounding of the sums, 16 units of 2^-53 of each segment's largest value.
  const int64_t n = 1000;
  const std::vector<LarsSegment> segments = {{0, 517, true}, {517, 3, false}, {528, 301, true}, {829, 171, true}};
  const Tensor w0 = make_input({{n}}, 2, DType::f64, Device::cpu());
  const Tensor grad = make_input({{n}, -0.1, 0.1}, 3, DType::f64, Device::cpu());
  const LarsStepOptions opt{0.9, 1e-3, 0.02};
  const Tensor lr = lr_tensor(0.5);
  auto run = [&](int64_t chunk) {
    Tensor w = w0.clone(), v = Tensor::zeros({n}, DType::f64);
    const LarsPlan plan(segments, n, Device::cpu(), chunk);
    for (int step = 0; step < 3; ++step) lars_step(w, grad, v, plan, opt, lr);
    return w;
  };
  const Tensor reference = run(LarsPlan::kDefaultChunk);
  for (int64_t chunk : {1, 7, 64})
    EXPECT_TRUE(segments_close(run(chunk), reference, segments, 16)) << "chunk " << chunk;
  const LarsPlan plan(segments, n, Device::cpu(), 64);
  EXPECT_EQ(plan.chunks().size(), 9u + 1u + 5u + 3u);
  EXPECT_EQ(plan.segment_chunks()[2].first_chunk, 10);
  EXPECT_EQ(plan.chunks()[10].begin, 528);
  EXPECT_EQ(plan.chunks()[14].end, 829);
}

// ------------------------------------------------------------------ refusals

TEST(LarsStep, RefusesBadSegmentsWithTheirPlaces) {
  std::string msg = error_of([] { LarsPlan({{0, 10, true}, {8, 4, false}}, 20, Device::cpu()); });
  EXPECT_NE(msg.find("segments 0 [0, 10) and 1 [8, 12) overlap"), std::string::npos) << msg;
  msg = error_of([] { LarsPlan({{12, 4, true}, {0, 13, true}}, 20, Device::cpu()); });
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
  msg = error_of([] { LarsPlan({{15, 6, true}}, 20, Device::cpu()); });
  EXPECT_NE(msg.find("[15, 21), past the end of the 20-element buffers"), std::string::npos) << msg;
  msg = error_of([] { LarsPlan({{-1, 2, true}}, 20, Device::cpu()); });
  EXPECT_NE(msg.find("offset -1"), std::string::npos) << msg;
  msg = error_of([] { LarsPlan({{0, -2, true}}, 20, Device::cpu()); });
  EXPECT_NE(msg.find("length -2"), std::string::npos) << msg;
  msg = error_of([] { LarsPlan({{0, 2, true}}, 20, Device::cpu(), 0); });
  EXPECT_NE(msg.find("chunk size must be > 0"), std::string::npos) << msg;
  EXPECT_NO_THROW(LarsPlan({{4, 0, true}, {0, 20, true}}, 20, Device::cpu())) << "an empty segment overlaps nothing";
  EXPECT_NO_THROW(LarsPlan({{10, 10, true}, {0, 10, false}}, 20, Device::cpu())) << "any order, touching";
}

TEST(LarsStep, RefusesWhatItCannotUpdate) {
  Tensor p = Tensor::zeros({6}), g = Tensor::zeros({6}), v = Tensor::zeros({6});
  const std::vector<LarsSegment> segments = {{0, 6, true}};
  const LarsStepOptions opt{0.9, 1e-6, 0.001};
  const Tensor lr = lr_tensor(0.1);
  for (auto [field, name] : {std::pair{&LarsStepOptions::momentum, "momentum"},
                             {&LarsStepOptions::weight_decay, "weight_decay"}, {&LarsStepOptions::eta, "eta"}}) {
    LarsStepOptions bad = opt;
    bad.*field = -0.5;
    const std::string msg = error_of([&] { lars_step(p, g, v, segments, bad, lr); });
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find("-0.5"), std::string::npos) << msg;
  }
  EXPECT_THROW(lars_step(p, Tensor::zeros({5}), v, {{0, 5, true}}, opt, lr), Error) << "gradient shape";
  Tensor v64 = Tensor::zeros({6}, DType::f64);
  EXPECT_THROW(lars_step(p, g, v64, segments, opt, lr), Error) << "momentum dtype";
  Tensor pi = Tensor::zeros({6}, DType::i32), vi = Tensor::zeros({6}, DType::i32);
  EXPECT_THROW(lars_step(pi, Tensor::zeros({6}, DType::i32), vi, segments, opt, lr), Error) << "integer dtype";
  EXPECT_THROW(lars_step(p, g, p, segments, opt, lr), Error) << "momentum aliasing the parameters";
  Tensor strided = Tensor::zeros({12}).slice(0, 0, 12, 2);
  EXPECT_THROW(lars_step(strided, g, v, segments, opt, lr), Error) << "parameters not contiguous";
  EXPECT_NO_THROW(lars_step(p, Tensor::zeros({12}).slice(0, 0, 12, 2), v, segments, opt, lr)) << "a strided gradient";
  std::string msg = error_of([&] { lars_step(p, g, v, LarsPlan(segments, 8, Device::cpu()), opt, lr); });
  EXPECT_NE(msg.find("made for buffers of 8 elements"), std::string::npos) << msg;
  msg = error_of([&] { lars_step(p, g, v, segments, opt, Tensor::full({1}, 0.1)); });
  EXPECT_NE(msg.find("one-element f64"), std::string::npos) << "an f32 learning rate: " << msg;
  msg = error_of([&] { lars_step(p, g, v, segments, opt, Tensor::full({3}, 0.1, DType::f64)); });
  EXPECT_NE(msg.find("one-element f64"), std::string::npos) << "three learning rates: " << msg;
  Tensor leaf = Tensor::zeros({6});
  leaf.requires_grad_(true);
  EXPECT_THROW(lars_step(leaf, g, v, segments, opt, lr), Error) << "parameters requiring grad with grad mode on";
  NoGradGuard no_grad;
  EXPECT_NO_THROW(lars_step(leaf, g, v, segments, opt, lr));
}

TEST(LarsStep, ReadsTheLearningRateWhenItRunsWithoutAHostRead) {
  // One lr tensor refilled between steps (as nn::Optimizer::set_lr before a graph replay) gives
  // what a fresh tensor of each value gives, and no step reads anything back to the host.
  const std::vector<LarsSegment> segments = {{0, 5, true}, {5, 2, false}, {8, 9, true}};
  const Tensor w0 = make_input({{17}}, 4, DType::f64, Device::cpu());
  const Tensor grad = make_input({{17}, -0.1, 0.1}, 5, DType::f64, Device::cpu());
  const LarsStepOptions opt{0.9, 1e-3, 0.02};
  for (Device device : {Device::cpu(), Device::cuda()}) {
    if (device.is_cuda() && cuda_device_count() == 0) continue;
    const LarsPlan plan(segments, 17, device);
    Tensor w = w0.to(device).clone(), v = Tensor::zeros({17}, DType::f64, device), lr = lr_tensor(0.5, device);
    Tensor w_ref = w.clone(), v_ref = v.clone();
    const Tensor g = grad.to(device);
    const uint64_t reads = host_read_count();
    for (double value : {0.5, 0.2, 0.0}) {
      lr.fill_(value);
      lars_step(w, g, v, plan, opt, lr);
      lars_step(w_ref, g, v_ref, plan, opt, lr_tensor(value, device));
    }
    EXPECT_EQ(host_read_count(), reads) << device.str();
    EXPECT_EQ(w.to_vector<double>(), w_ref.to_vector<double>()) << device.str();
    EXPECT_EQ(v.to_vector<double>(), v_ref.to_vector<double>()) << device.str();
    EXPECT_NE(w.to_vector<double>(), w0.to_vector<double>()) << device.str();
  }
}

// ------------------------------------------------------------------ CUDA

// A flat buffer holding tensors of `shapes`, each 16-aligned as Module::flatten_parameters() lays
// them out; those with one dimension are excluded, as nn::Lars excludes them.
struct FlatLayout {
  std::vector<LarsSegment> segments;
  int64_t numel = 0;
};
FlatLayout flat_layout(const std::vector<Shape>& shapes) {
  FlatLayout l;
  for (const Shape& s : shapes) {
    l.segments.push_back({l.numel, shape_numel(s), s.size() > 1});
    l.numel = (l.numel + shape_numel(s) + 15) / 16 * 16;
  }
  return l;
}

// CPU and CUDA from the same start, `steps` steps each with its own lr; CUDA twice, which must give
// the same bits (deterministic). Per segment within 16 units of roundoff of its largest value, as
// lars_step.h states (only the norms' summation order differs).
void check_cuda_against_cpu(const FlatLayout& l, DType dtype, int steps, int64_t chunk) {
  const Tensor w0 = make_input({{l.numel}, -0.2, 0.2}, 21, dtype, Device::cpu());
  const Tensor v0 = make_input({{l.numel}, -1e-3, 1e-3}, 22, dtype, Device::cpu());
  std::vector<Tensor> grads;
  for (int s = 0; s < steps; ++s) grads.push_back(make_input({{l.numel}, -0.01, 0.01}, 23 + s, dtype, Device::cpu()));
  auto run = [&](Device device) {
    Tensor w = w0.to(device).clone(), v = v0.to(device).clone();
    const LarsPlan plan(l.segments, l.numel, device, chunk);
    for (int s = 0; s < steps; ++s)
      lars_step(w, grads[s].to(device), v, plan, {0.9, 1e-4, 0.001}, lr_tensor(0.3 + 0.2 * s, device));
    return std::pair{w.to(Device::cpu()), v.to(Device::cpu())};
  };
  const auto [w_cpu, v_cpu] = run(Device::cpu());
  const auto [w_gpu, v_gpu] = run(Device::cuda());
  const auto [w_again, v_again] = run(Device::cuda());
  EXPECT_TRUE(segments_close(w_gpu, w_cpu, l.segments, 16)) << "params";
  EXPECT_TRUE(segments_close(v_gpu, v_cpu, l.segments, 16)) << "momentum";
  EXPECT_EQ(differing_bits(w_again, w_gpu), 0) << "CUDA must repeat itself to the bit";
  EXPECT_EQ(differing_bits(v_again, v_gpu), 0) << "CUDA must repeat itself to the bit";
  std::cout << "  " << dtype_name(dtype) << ", " << l.numel << " elements: " << differing_bits(w_gpu, w_cpu)
            << " params and " << differing_bits(v_gpu, v_cpu) << " momentum values differ from the CPU's bits\n";
}

// The small twin of the real-size case (the emulator runs it): odd segment lengths, an excluded
// one, segments of many chunks of 64 and one of a single partial chunk.
TEST(LarsStep, CudaMatchesCpuOnASmallModel) {
  SKIP_WITHOUT_CUDA();
  const FlatLayout l = flat_layout({{16, 3, 3, 3}, {16}, {16}, {33, 16, 3, 3}, {33}, {10, 33}, {10}});
  for (const DType dtype : {DType::f32, DType::f64}) check_cuda_against_cpu(l, dtype, 3, 64);
}

TEST(LarsStep, RefusesAPlanOfAnotherDevice) {
  SKIP_WITHOUT_CUDA();
  Tensor p = Tensor::zeros({6}, DType::f32, Device::cuda()), g = p.clone(), v = p.clone();
  const std::string msg =
      error_of([&] { lars_step(p, g, v, LarsPlan({{0, 6, true}}, 6, Device::cpu()), {}, lr_tensor(0.1, Device::cuda())); });
  EXPECT_NE(msg.find("the plan was made for cpu"), std::string::npos) << msg;
}

// torchvision's ResNet-50 without its classifier, in named_parameters() order: 159 tensors,
// 23,508,032 values, the largest layer4's 3x3 convolutions (512, 512, 3, 3) = 2,359,296.
std::vector<Shape> resnet50_trunk_shapes() {
  std::vector<Shape> shapes = {{64, 3, 7, 7}, {64}, {64}};
  auto conv_bn = [&](int64_t out, int64_t in, int64_t k) {
    shapes.push_back({out, in, k, k});
    shapes.push_back({out});
    shapes.push_back({out});
  };
  const int64_t planes_of[] = {64, 128, 256, 512}, blocks_of[] = {3, 4, 6, 3};
  int64_t inplanes = 64;
  for (int layer = 0; layer < 4; ++layer) {
    const int64_t planes = planes_of[layer];
    for (int64_t block = 0; block < blocks_of[layer]; ++block) {
      conv_bn(planes, inplanes, 1);
      conv_bn(planes, planes, 3);
      conv_bn(planes * 4, planes, 1);
      if (block == 0) conv_bn(planes * 4, inplanes, 1);  // downsample
      inplanes = planes * 4;
    }
  }
  return shapes;
}

TEST(LarsStep, CudaRealSizeResNet50MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  const std::vector<Shape> shapes = resnet50_trunk_shapes();
  int64_t total = 0;
  for (const Shape& s : shapes) total += shape_numel(s);
  ASSERT_EQ(shapes.size(), 159u);
  ASSERT_EQ(total, 23508032);
  check_cuda_against_cpu(flat_layout(shapes), DType::f32, 3, LarsPlan::kDefaultChunk);
}

}  // namespace
}  // namespace engine::testing
