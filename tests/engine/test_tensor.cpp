// test_tensor.cpp - tensor and view semantics: shapes, strides, views sharing storage,
// contiguous(), memory formats, dtype conversion, copies, printing, and the errors of bad use.
#include <gtest/gtest.h>

#include "engine/allocator.h"
#include "engine/tensor.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

Tensor arange_f32(Shape shape) {
  std::vector<float> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_vector(v, shape);
}

TEST(Tensor, ContiguousStridesAndNumel) {
  Tensor t = Tensor::empty({2, 3, 4});
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % kHostAlignment, 0u) << "host memory is 64-byte aligned";
}

TEST(Tensor, ZeroDimAndEmptyTensors) {
  Tensor scalar = Tensor::full({}, 3.5);
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_DOUBLE_EQ(scalar.item(), 3.5);
  Tensor empty = Tensor::zeros({0, 5});
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.to_vector<float>().empty());
}

TEST(Tensor, TransposeIsAViewWithSwappedStrides) {
  Tensor t = arange_f32({2, 3});
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.strides(), (Shape{1, 3}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.storage(), t.storage()) << "a view shares storage";
  EXPECT_EQ(tt.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor c = tt.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), t.storage()) << "contiguous() of a non-contiguous view copies";
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(t.contiguous().is_same(t)) << "contiguous() of a contiguous tensor is the tensor itself";
}

TEST(Tensor, PermuteAndItsInverse) {
  Tensor t = arange_f32({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  // p[k, i, j] == t[i, j, k]
  const std::vector<float> pv = p.to_vector<float>();
  EXPECT_EQ(pv[1 * 6 + 1 * 3 + 2], 1 * 12 + 2 * 4 + 1);
  EXPECT_EQ(p.permute({1, 2, 0}).to_vector<float>(), t.to_vector<float>());
}

TEST(Tensor, SliceWithStepAndNegativeBounds) {
  Tensor t = arange_f32({10});
  EXPECT_EQ(t.slice(0, 2, 9, 3).to_vector<float>(), (std::vector<float>{2, 5, 8}));
  EXPECT_EQ(t.slice(0, -3, 10).to_vector<float>(), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(t.slice(0, 8, 100).to_vector<float>(), (std::vector<float>{8, 9})) << "end is clamped as in Python";
  Tensor m = arange_f32({4, 5});
  Tensor col = m.slice(1, 1, 2);
  EXPECT_EQ(col.shape(), (Shape{4, 1}));
  EXPECT_EQ(col.offset(), 1);
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{1, 6, 11, 16}));
}

TEST(Tensor, WritesThroughAViewReachTheBase) {
  Tensor t = Tensor::zeros({3, 4});
  t.slice(1, 1, 3).fill_(7.0);
  t.transpose(0, 1).slice(0, 0, 1).copy_(Tensor::from_vector<float>({1, 2, 3}, {1, 3}));
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 7, 7, 0, 2, 7, 7, 0, 3, 7, 7, 0}));
}

TEST(Tensor, ReshapeViewsWhenContiguousAndCopiesOtherwise) {
  Tensor t = arange_f32({2, 6});
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 4}));
  EXPECT_EQ(r.storage(), t.storage());
  Tensor tt = t.transpose(0, 1);
  Tensor r2 = tt.reshape({12});
  EXPECT_NE(r2.storage(), t.storage());
  EXPECT_EQ(r2.to_vector<float>()[1], 6.0f);
  EXPECT_THROW(tt.view({12}), Error) << "view() never copies, so a non-contiguous view cannot be reshaped by it";
  EXPECT_THROW(t.reshape({5, -1}), Error);
  EXPECT_THROW(t.reshape({-1, -1}), Error);
}

TEST(Tensor, MemoryFormatNHWC) {
  Tensor nchw = arange_f32({2, 3, 4, 5});
  EXPECT_EQ(nchw.memory_format(), MemoryFormat::NCHW);
  Tensor nhwc = nchw.contiguous(MemoryFormat::NHWC);
  EXPECT_EQ(nhwc.memory_format(), MemoryFormat::NHWC);
  EXPECT_EQ(nhwc.strides(), (Shape{60, 1, 15, 3}));
  EXPECT_EQ(nhwc.shape(), nchw.shape()) << "logical indexing stays (N, C, H, W)";
  EXPECT_EQ(nhwc.to_vector<float>(), nchw.to_vector<float>());
  // In storage, the channels of one pixel are adjacent.
  const float* raw = nhwc.data<float>();
  EXPECT_EQ(raw[0], 0.0f);
  EXPECT_EQ(raw[1], 20.0f);  // (n=0, c=1, h=0, w=0)
  EXPECT_EQ(raw[2], 40.0f);
  EXPECT_EQ(nhwc.clone().memory_format(), MemoryFormat::NHWC) << "clone keeps the memory format";
  EXPECT_EQ(Tensor::empty({2, 3, 4, 5}, DType::f32, Device::cpu(), MemoryFormat::NHWC).memory_format(),
            MemoryFormat::NHWC);
  EXPECT_THROW(Tensor::empty({3, 4}, DType::f32, Device::cpu(), MemoryFormat::NHWC), Error);
}

TEST(Tensor, DtypeConversions) {
  Tensor f = Tensor::from_vector<float>({-2.7f, 0.5f, 1.0f, 255.9f}, {4});
  EXPECT_EQ(f.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{-2, 0, 1, 255})) << "truncates toward zero";
  Tensor wild = Tensor::from_vector<float>({-1.0f, 300.0f, std::nanf(""), 1e20f}, {4});
  EXPECT_EQ(wild.to(DType::u8).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 255, 0, 255})) << "saturates, NaN to 0";
  EXPECT_EQ(wild.to(DType::i32).to_vector<int32_t>()[3], std::numeric_limits<int32_t>::max());
  EXPECT_EQ(f.to(DType::f64).to_vector<double>()[1], 0.5);
  Tensor u8 = Tensor::from_vector<uint8_t>({0, 17, 255}, {3});
  EXPECT_EQ(u8.to(DType::f32).to_vector<float>(), (std::vector<float>{0, 17, 255}));
  EXPECT_EQ(u8.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 17, 255}));
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  // 1 + 3 * 2^-8 lies between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6 (even mantissa).
  Tensor f = Tensor::from_vector<float>({1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 3.14159265f, -0.0f}, {4});
  const std::vector<float> back = f.to(DType::bf16).to(DType::f32).to_vector<float>();
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], 1.0f + 4.0f / 256);
  EXPECT_EQ(back[2], 3.140625f);
  EXPECT_TRUE(std::signbit(back[3]));
  EXPECT_EQ(bf16::from_float(std::numeric_limits<float>::infinity()).to_float(), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16::from_float(std::numeric_limits<float>::quiet_NaN()).to_float()));
}

TEST(Tensor, CloneIsIndependent) {
  Tensor t = arange_f32({3});
  Tensor c = t.clone();
  c.fill_(5.0);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 1, 2}));
}

TEST(Tensor, CopyBetweenOverlappingViewsOfOneStorage) {
  Tensor t = arange_f32({6});
  t.slice(0, 1, 6).copy_(t.slice(0, 0, 5));  // shift right by one: must read before writing
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 0, 1, 2, 3, 4}));
}

TEST(Tensor, PrintsSmallTensors) {
  Tensor t = Tensor::from_vector<float>({1, 2.5f, -3, 4}, {2, 2});
  EXPECT_EQ(t.to_string(), "Tensor(f32, cpu, (2, 2))\n[[1, 2.5],\n [-3, 4]]");
  EXPECT_EQ(Tensor::from_vector<int64_t>({7, 8}, {2}).to_string(), "Tensor(i64, cpu, (2,))\n[7, 8]");
  EXPECT_NE(Tensor::zeros({100, 100}).to_string().find("too many to print"), std::string::npos);
  EXPECT_EQ(Tensor().str(), "Tensor(undefined)");
}

TEST(Tensor, FromStorageChecksBounds) {
  Tensor t = Tensor::zeros({10});
  EXPECT_NO_THROW(Tensor::from_storage(t.storage(), {3, 3}, {3, 1}, 1, DType::f32));
  EXPECT_THROW(Tensor::from_storage(t.storage(), {3, 4}, {4, 1}, 0, DType::f32), Error);
  EXPECT_THROW(Tensor::from_storage(t.storage(), {6}, {1}, 0, DType::f64), Error) << "40 bytes hold 5 doubles";
}

TEST(Tensor, BadUseGivesClearErrors) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.permute({0, 0});
    FAIL() << "permute with a repeated dim must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("appears twice"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tensor.cpp"), std::string::npos) << "the message names file:line";
  }
  EXPECT_THROW(t.size(2), Error);
  EXPECT_THROW(t.slice(0, 0, 1, 0), Error);
  EXPECT_THROW(t.copy_(Tensor::zeros({3, 2})), Error);
  EXPECT_THROW(Tensor().shape(), Error);
  EXPECT_THROW(t.data<double>(), Error) << "typed access checks the dtype";
  EXPECT_THROW(Tensor::zeros({-1}), Error);
  EXPECT_THROW(Tensor::zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}), Error) << "at most 8 dims";
  EXPECT_THROW(Device::parse("gpu"), Error);
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
}

TEST(Tensor, CudaRequestWithoutAGpuSaysWhatIsMissing) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "this machine has a GPU";
  try {
    Tensor::zeros({4}, DType::f32, Device::cuda());
    FAIL() << "allocating on a GPU that is not there must throw";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cuda:0"), std::string::npos) << what;
    EXPECT_NE(what.find(cuda_is_built() ? "usable GPU" : "no CUDA backend"), std::string::npos) << what;
    EXPECT_NE(what.find("--device cpu"), std::string::npos) << "the message says what to do: " << what;
  }
  EXPECT_THROW(Tensor::zeros({4}).to(Device::cuda()), Error);
}

TEST(Tensor, CudaRoundTripKeepsValuesAndViews) {
  SKIP_WITHOUT_CUDA();
  Tensor t = arange_f32({3, 4});
  Tensor g = t.to(Device::cuda());
  EXPECT_EQ(g.device(), Device::cuda());
  EXPECT_EQ(g.to_vector<float>(), t.to_vector<float>());
  // Views, strided copies, fills and conversions on the GPU agree with the CPU.
  Tensor gv = g.transpose(0, 1).contiguous();
  EXPECT_EQ(gv.to_vector<float>(), t.transpose(0, 1).contiguous().to_vector<float>());
  g.slice(1, 1, 3).fill_(-1.0);
  t.slice(1, 1, 3).fill_(-1.0);
  EXPECT_EQ(g.to_vector<float>(), t.to_vector<float>());
  EXPECT_EQ(g.to(DType::bf16).to(DType::f64).to_vector<double>(), t.to(DType::bf16).to(DType::f64).to_vector<double>());
  Tensor wild = Tensor::from_vector<float>({-1.0f, 300.0f, std::nanf(""), 7.9f}, {4});
  EXPECT_EQ(wild.to(Device::cuda()).to(DType::u8).to_vector<uint8_t>(), wild.to(DType::u8).to_vector<uint8_t>())
      << "float to integer saturates the same way on both devices";
  Tensor nhwc = arange_f32({2, 3, 4, 5}).to(Device::cuda()).contiguous(MemoryFormat::NHWC);
  EXPECT_EQ(nhwc.to_vector<float>(), arange_f32({2, 3, 4, 5}).to_vector<float>());
}

TEST(Tensor, ContiguousCountsTheLayoutConversionsItMakes) {
  const Tensor nchw = arange_f32({2, 3, 4, 5});
  const uint64_t start = layout_conversion_count();
  EXPECT_TRUE(nchw.contiguous().is_same(nchw));  // already so: no copy, not counted
  EXPECT_EQ(layout_conversion_count(), start);
  const Tensor nhwc = nchw.contiguous(MemoryFormat::NHWC);
  EXPECT_EQ(layout_conversion_count(), start + 1);
  EXPECT_TRUE(nhwc.contiguous(MemoryFormat::NHWC).is_same(nhwc));
  (void)nhwc.contiguous();  // back to NCHW: a second conversion
  EXPECT_EQ(layout_conversion_count(), start + 2);
  // Deliberate casts are not hidden conversions: to(dtype) and to(dtype, format) are not counted.
  const Tensor cast = nchw.to(DType::bf16, MemoryFormat::NHWC);
  (void)nchw.to(DType::f64);
  EXPECT_EQ(layout_conversion_count(), start + 2);
  EXPECT_EQ(cast.dtype(), DType::bf16);
  EXPECT_TRUE(cast.is_contiguous(MemoryFormat::NHWC));
  EXPECT_EQ(cast.to(DType::f32).contiguous().to_vector<float>(), nchw.to_vector<float>());  // small integers: exact
}

TEST(Tensor, ACastWithAFormatSendsTheGradientBackInTheSourceDtypeAndFormat) {
  Tensor w = arange_f32({2, 3, 4, 5});
  w.requires_grad_();
  const Tensor cast = w.to(DType::bf16, MemoryFormat::NHWC);
  // A seed of distinct values (0..119, exact in bf16), laid out NHWC: the gradient must come back
  // with each value at its own (n, c, h, w), in f32 NCHW.
  const Tensor seed = arange_f32({2, 3, 4, 5}).to(DType::bf16, MemoryFormat::NHWC);
  cast.backward(seed);
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_TRUE(w.grad().is_contiguous());
  EXPECT_EQ(w.grad().to_vector<float>(), arange_f32({2, 3, 4, 5}).to_vector<float>());
  EXPECT_NE(error_of([&] { (void)Tensor::ones({3, 4}).to(DType::bf16, MemoryFormat::NHWC); }).find("4-D"),
            std::string::npos);
}

}  // namespace
}  // namespace engine::testing
