// test_elementwise_layout.cpp - the elementwise ops keep their operands' memory format and take
// bf16 (ops/elementwise_unary.h, ops/elementwise_binary.h): an NHWC (channels-last) activation
// goes through relu, the residual add, mul and the scalar ops, forward and backward, without one
// layout conversion (counted by layout_conversion_count), on the CPU and on CUDA; a bf16 result
// is the f32 result of the same inputs rounded once to bf16, bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

const Shape kImage = {2, 5, 3, 4};  // (N, C, H, W): C = 5 so NHWC and NCHW strides differ

Tensor nhwc_input(uint64_t seed, DType dtype, Device device) {
  InputSpec spec{kImage, -1.0, 1.0, Layout::ChannelsLast, 0.0};
  spec.avoid_zero = 0.01;  // relu's gradient is then decided by a clear sign
  return make_input(spec, seed, dtype, device);
}

std::vector<Device> devices() {
  std::vector<Device> list = {Device::cpu()};
  if (cuda_device_count() > 0) list.push_back(Device::cuda());
  return list;
}

float round_to(DType dtype, float v) { return dtype == DType::bf16 ? bf16::from_float(v).to_float() : v; }

void expect_nhwc(const Tensor& t, const std::string& what) {
  EXPECT_EQ(t.memory_format(), MemoryFormat::NHWC) << what << ": " << t.str();
  EXPECT_TRUE(t.is_contiguous(MemoryFormat::NHWC)) << what << ": " << t.str();
}

// relu, add, mul and add_scalar of NHWC operands: NHWC outputs, no conversion, and each value is
// the float result rounded once to the dtype (exact: one IEEE operation per element).
void check_forward_keeps_nhwc(DType dtype, Device device) {
  const std::string where = std::string(dtype_name(dtype)) + " on " + device.str();
  const Tensor a = nhwc_input(1, dtype, device), b = nhwc_input(2, dtype, device);
  const uint64_t conversions = layout_conversion_count();
  const Tensor r = relu(a), s = add(a, b), p = mul(a, b), q = add_scalar(a, 0.5);
  EXPECT_EQ(layout_conversion_count(), conversions) << where;
  for (const Tensor* t : {&r, &s, &p, &q}) {
    expect_nhwc(*t, where);
    EXPECT_EQ(t->dtype(), dtype) << where;
    EXPECT_EQ(t->device(), device) << where;
  }
  const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
  std::vector<float> relu_ref(av.size()), add_ref(av.size()), mul_ref(av.size()), scalar_ref(av.size());
  for (size_t i = 0; i < av.size(); ++i) {
    relu_ref[i] = av[i] > 0.0f ? av[i] : 0.0f;
    add_ref[i] = round_to(dtype, av[i] + bv[i]);
    mul_ref[i] = round_to(dtype, av[i] * bv[i]);
    scalar_ref[i] = round_to(dtype, av[i] + 0.5f);
  }
  EXPECT_EQ(r.to_vector<float>(), relu_ref) << where;
  EXPECT_EQ(s.to_vector<float>(), add_ref) << where;
  EXPECT_EQ(p.to_vector<float>(), mul_ref) << where;
  EXPECT_EQ(q.to_vector<float>(), scalar_ref) << where;
  // The values are not trivially those of the input (relu zeroes some, keeps others).
  EXPECT_NE(relu_ref, av);
  EXPECT_NE(std::count(relu_ref.begin(), relu_ref.end(), 0.0f), 0);
}

TEST(ElementwiseLayout, NhwcForwardStaysNhwcOnCpu) {
  check_forward_keeps_nhwc(DType::f32, Device::cpu());
  check_forward_keeps_nhwc(DType::bf16, Device::cpu());
}

TEST(ElementwiseLayout, NhwcForwardStaysNhwcOnCuda) {
  SKIP_WITHOUT_CUDA();
  check_forward_keeps_nhwc(DType::f32, Device::cuda());
  check_forward_keeps_nhwc(DType::bf16, Device::cuda());
}

// The residual block's tail, relu(a + b), backward from an NHWC seed: both gradients NHWC-dense,
// no conversion anywhere, and equal to seed where the output is positive, else 0 (exact in any
// dtype: relu and add pass dout through). A row-major seed is converted once, at the relu, and the
// gradients still come back NHWC.
void check_backward_keeps_nhwc(DType dtype, Device device) {
  for (const bool nhwc_seed : {true, false}) {
    const std::string where = std::string(dtype_name(dtype)) + " on " + device.str() +
                              (nhwc_seed ? ", NHWC seed" : ", NCHW seed");
    Tensor a = nhwc_input(3, dtype, device), b = nhwc_input(4, dtype, device);
    a.requires_grad_();
    b.requires_grad_();
    const Tensor y = relu(add(a, b));
    expect_nhwc(y, where);
    Tensor seed = make_input({kImage, -1.0, 1.0, nhwc_seed ? Layout::ChannelsLast : Layout::Contiguous, 0.0}, 5,
                             dtype, device);
    const uint64_t conversions = layout_conversion_count();
    y.backward(seed);
    EXPECT_EQ(layout_conversion_count(), conversions + (nhwc_seed ? 0 : 1)) << where;
    const std::vector<float> yv = y.to_vector<float>(), sv = seed.to_vector<float>();
    std::vector<float> expected(yv.size());
    for (size_t i = 0; i < yv.size(); ++i) expected[i] = yv[i] > 0.0f ? sv[i] : 0.0f;
    for (const Tensor* x : {&a, &b}) {
      ASSERT_TRUE(x->grad().defined()) << where;
      expect_nhwc(x->grad(), where + ", gradient");
      EXPECT_EQ(x->grad().dtype(), dtype) << where;
      EXPECT_EQ(x->grad().to_vector<float>(), expected) << where;
    }
  }
}

TEST(ElementwiseLayout, NhwcBackwardGivesNhwcGradientsOnCpu) {
  check_backward_keeps_nhwc(DType::f32, Device::cpu());
  check_backward_keeps_nhwc(DType::bf16, Device::cpu());
}

TEST(ElementwiseLayout, NhwcBackwardGivesNhwcGradientsOnCuda) {
  SKIP_WITHOUT_CUDA();
  check_backward_keeps_nhwc(DType::f32, Device::cuda());
  check_backward_keeps_nhwc(DType::bf16, Device::cuda());
}

// mul's backward pairs dout with the saved operands in their shared format: NHWC gradients with
// the right values (dout * b, dout * a, each rounded once).
TEST(ElementwiseLayout, NhwcMulBackwardOnCpu) {
  for (const DType dtype : {DType::f32, DType::bf16}) {
    Tensor a = nhwc_input(6, dtype, Device::cpu()), b = nhwc_input(7, dtype, Device::cpu());
    a.requires_grad_();
    b.requires_grad_();
    const Tensor seed = nhwc_input(8, dtype, Device::cpu());
    const uint64_t conversions = layout_conversion_count();
    mul(a, b).backward(seed);
    EXPECT_EQ(layout_conversion_count(), conversions);
    const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>(), sv = seed.to_vector<float>();
    std::vector<float> da(av.size()), db(av.size());
    for (size_t i = 0; i < av.size(); ++i) {
      da[i] = round_to(dtype, sv[i] * bv[i]);
      db[i] = round_to(dtype, sv[i] * av[i]);
    }
    expect_nhwc(a.grad(), "da");
    expect_nhwc(b.grad(), "db");
    EXPECT_EQ(a.grad().to_vector<float>(), da) << dtype_name(dtype);
    EXPECT_EQ(b.grad().to_vector<float>(), db) << dtype_name(dtype);
  }
}

// Equal shapes in different formats: b is copied once into a's format, and out takes it.
TEST(ElementwiseLayout, MixedFormatsCopyBIntoAsFormat) {
  const Tensor a = nhwc_input(9, DType::f32, Device::cpu());
  const Tensor b = a.contiguous().clone().detach();  // the same values, row-major (copy made here)
  uint64_t conversions = layout_conversion_count();
  const Tensor nhwc_first = add(a, b);
  EXPECT_EQ(layout_conversion_count(), conversions + 1);
  expect_nhwc(nhwc_first, "add(NHWC, NCHW)");
  conversions = layout_conversion_count();
  const Tensor nchw_first = add(b, a);
  EXPECT_EQ(layout_conversion_count(), conversions + 1);
  EXPECT_TRUE(nchw_first.is_contiguous());
  const std::vector<float> av = a.to_vector<float>();
  std::vector<float> doubled(av.size());
  for (size_t i = 0; i < av.size(); ++i) doubled[i] = av[i] + av[i];
  EXPECT_EQ(nhwc_first.to_vector<float>(), doubled);
  EXPECT_EQ(nchw_first.to_vector<float>(), doubled);
}

// add_ writes an NHWC a in place, without a copy, when b is NHWC too.
TEST(ElementwiseLayout, InPlaceAddKeepsNhwcWithoutCopy) {
  for (const Device device : devices()) {
    for (const DType dtype : {DType::f32, DType::bf16}) {
      Tensor a = nhwc_input(10, dtype, device);
      const Tensor b = nhwc_input(11, dtype, device);
      const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
      const void* storage = a.data_ptr();
      const uint64_t conversions = layout_conversion_count();
      add_(a, b);
      EXPECT_EQ(layout_conversion_count(), conversions) << device.str();
      EXPECT_EQ(a.data_ptr(), storage);
      expect_nhwc(a, "add_");
      std::vector<float> expected(av.size());
      for (size_t i = 0; i < av.size(); ++i) expected[i] = round_to(dtype, av[i] + bv[i]);
      EXPECT_EQ(a.to_vector<float>(), expected) << dtype_name(dtype) << " on " << device.str();
    }
  }
}

// On the CPU a bf16 op computes in f32 and rounds once: its result is the f32 op on the same
// (bf16) inputs, rounded to bf16, bit for bit, in any layout and when broadcasting.
TEST(ElementwiseBf16, CpuResultIsTheF32ResultRoundedOnce) {
  struct Operands {
    const char* what;
    Tensor a, b;
  };
  // b is kept in [0.5, 2]: a divisor away from 0 and a positive argument of log.
  const Tensor nhwc_a = nhwc_input(12, DType::bf16, Device::cpu());
  const Tensor nhwc_b = make_input({kImage, 0.5, 2.0, Layout::ChannelsLast, 0.0}, 13, DType::bf16, Device::cpu());
  const Tensor flat_a = make_input({{1031}, -2.0, 2.0, Layout::Contiguous, 0.0}, 14, DType::bf16, Device::cpu());
  const Tensor flat_b = make_input({{1031}, 0.5, 2.0, Layout::Contiguous, 0.0}, 15, DType::bf16, Device::cpu());
  const Tensor wide_a = make_input({{4, 3, 5}, -1.0, 1.0, Layout::Contiguous, 0.0}, 16, DType::bf16, Device::cpu());
  const Tensor row_b = make_input({{5}, 0.5, 2.0, Layout::Contiguous, 0.0}, 17, DType::bf16, Device::cpu());
  for (const Operands& o : {Operands{"nhwc", nhwc_a, nhwc_b}, Operands{"odd_size_1031", flat_a, flat_b},
                            Operands{"broadcast", wide_a, row_b}}) {
    const Tensor a32 = o.a.to(DType::f32), b32 = o.b.to(DType::f32);
    auto same = [&](const Tensor& bf16_result, const Tensor& f32_result, const char* op) {
      EXPECT_EQ(bf16_result.dtype(), DType::bf16) << op << " " << o.what;
      EXPECT_EQ(bf16_result.to_vector<float>(), f32_result.to(DType::bf16).to_vector<float>()) << op << " " << o.what;
    };
    same(add(o.a, o.b), add(a32, b32), "add");
    same(sub(o.a, o.b), sub(a32, b32), "sub");
    same(mul(o.a, o.b), mul(a32, b32), "mul");
    same(div(o.a, o.b), div(a32, b32), "div");
    same(relu(o.a), relu(a32), "relu");
    same(exp(o.a), exp(a32), "exp");
    same(log(o.b), log(b32), "log");
    same(add_scalar(o.a, 0.3), add_scalar(a32, 0.3), "add_scalar");
    same(mul_scalar(o.a, -1.7), mul_scalar(a32, -1.7), "mul_scalar");
  }
  // The sum is rounded: 0.3 is not a bf16 value, so x + 0.3 needs the rounding to land on one.
  const Tensor one = Tensor::ones({1}, DType::bf16);
  EXPECT_EQ(add_scalar(one, 0.3).to_vector<float>(), std::vector<float>{bf16::from_float(1.3f).to_float()});
  // relu keeps NaN in bf16 as in f32.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> r =
      relu(Tensor::from_vector(std::vector<float>{nan, -1.5f, 2.5f}, {3}).to(DType::bf16)).to_vector<float>();
  EXPECT_TRUE(std::isnan(r[0]));
  EXPECT_EQ(r[1], 0.0f);
  EXPECT_EQ(r[2], 2.5f);
}

// A bf16 operand broadcast over 64 rows: its gradient is the column sum of dout, summed in f32 and
// rounded once. Every dout is 1 + 2^-7 (a bf16 value); the f32 sum 64.5 is exact and a bf16 value,
// while a running sum in bf16 would have lost the 2^-7 parts from the third row on.
void check_bf16_broadcast_backward(Device device) {
  Tensor a = Tensor::zeros({64, 5}, DType::bf16, device), b = Tensor::zeros({5}, DType::bf16, device);
  a.requires_grad_();
  b.requires_grad_();
  const Tensor seed = Tensor::full({64, 5}, 1.0 + 1.0 / 128.0, DType::bf16, device);
  add(a, b).backward(seed);
  ASSERT_TRUE(b.grad().defined());
  EXPECT_EQ(b.grad().dtype(), DType::bf16);
  EXPECT_EQ(b.grad().shape(), Shape{5});
  EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>(5, 64.5f)) << device.str();
  EXPECT_EQ(a.grad().to_vector<float>(), std::vector<float>(64 * 5, 1.0f + 1.0f / 128.0f)) << device.str();

  // mul reaches the same reduction through dout * a: 2 (1 + 2^-7) is a bf16 value, 64 of them 129.
  Tensor c = Tensor::full({64, 5}, 2.0, DType::bf16, device), d = Tensor::full({5}, 2.0, DType::bf16, device);
  c.requires_grad_();
  d.requires_grad_();
  mul(c, d).backward(seed);
  EXPECT_EQ(d.grad().to_vector<float>(), std::vector<float>(5, 129.0f)) << device.str();
  EXPECT_EQ(c.grad().to_vector<float>(), std::vector<float>(64 * 5, 2.0f + 1.0f / 64.0f)) << device.str();
}

TEST(ElementwiseBf16, BroadcastAddBackwardSumsInF32OnCpu) { check_bf16_broadcast_backward(Device::cpu()); }

TEST(ElementwiseBf16, BroadcastAddBackwardSumsInF32OnCuda) {
  SKIP_WITHOUT_CUDA();
  check_bf16_broadcast_backward(Device::cuda());
}

}  // namespace
}  // namespace engine::testing
