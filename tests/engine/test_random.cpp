// test_random.cpp - Philox4x32-10 against the published known answers, the counter layout,
// reproducibility, stream independence, the distributions' moments, randperm, and CPU == CUDA
// bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "engine/philox.h"
#include "engine/random.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

TEST(Philox, Random123KnownAnswers) {
  struct Kat {
    uint32_t counter[4], key[2], expected[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    uint32_t out[4];
    philox::philox4x32_10(k.counter, k.key, out);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(out[j], k.expected[j]) << "word " << j;
  }
}

TEST(Philox, LogAndSinCosAreAccurate) {
  for (double u : {1.0, 0.5, 0.999999, 1e-9, 0.1234567, 2.3283064365386963e-10}) {
    EXPECT_NEAR(philox::log_unit(u), std::log(u), 4e-16 * std::max(1.0, std::fabs(std::log(u)))) << u;
  }
  for (double t = 0.0; t < 1.0; t += 0.0123) {
    double s, c;
    philox::sincos_turns(t, s, c);
    EXPECT_NEAR(s, std::sin(2 * M_PI * t), 1e-15) << t;
    EXPECT_NEAR(c, std::cos(2 * M_PI * t), 1e-15) << t;
  }
}

TEST(Random, SameSeedSameNumbersAndDrawsAdvance) {
  Generator g1(42), g2(42);
  Tensor a = Tensor::empty({1001}), b = Tensor::empty({1001});
  uniform_(a, g1);
  uniform_(b, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(g1.offset(), 251u) << "1001 values use ceil(1001 / 4) Philox blocks";
  uniform_(b, g2);
  EXPECT_NE(a.to_vector<float>(), b.to_vector<float>()) << "the next draw continues the sequence";
}

TEST(Random, RestoringTheOffsetReplaysADraw) {
  Generator g(3, 4);
  Tensor first = Tensor::empty({10}), again = Tensor::empty({10});
  const uint64_t saved = g.offset();  // what a checkpoint stores
  normal_(first, g);
  g.set_offset(saved);
  normal_(again, g);
  EXPECT_EQ(first.to_vector<float>(), again.to_vector<float>());
}

TEST(Random, ElementsFollowTheDocumentedLayout) {
  Generator g(7, 3);
  Tensor t = Tensor::empty({6}, DType::f64);
  uniform_(t, g);
  uint32_t w[4];
  philox::block_words(7, 3, 1, w);  // elements 4 and 5 come from block 1, words 0 and 1
  EXPECT_EQ(t.to_vector<double>()[5], w[1] / 4294967296.0);
}

TEST(Random, StreamsAreIndependent) {
  Generator a(5, 0), b(5, 1);
  Tensor x = Tensor::empty({64}), y = Tensor::empty({64});
  uniform_(x, a);
  uniform_(y, b);
  const std::vector<float> xv = x.to_vector<float>(), yv = y.to_vector<float>();
  int equal = 0;
  for (size_t i = 0; i < xv.size(); ++i) equal += xv[i] == yv[i];
  EXPECT_EQ(equal, 0);
}

TEST(Random, UniformNormalBernoulliMoments) {
  constexpr int64_t n = 200000;
  Generator g(2024);
  Tensor u = Tensor::empty({n});
  uniform_(u, g, -2.0, 6.0);
  const std::vector<float> uv = u.to_vector<float>();
  const double umean = std::accumulate(uv.begin(), uv.end(), 0.0) / n;
  EXPECT_NEAR(umean, 2.0, 0.03);
  EXPECT_GE(*std::min_element(uv.begin(), uv.end()), -2.0f);
  EXPECT_LT(*std::max_element(uv.begin(), uv.end()), 6.0f);

  Tensor z = Tensor::empty({n}, DType::f64);
  normal_(z, g, 1.0, 3.0);
  const std::vector<double> zv = z.to_vector<double>();
  double m = 0, m2 = 0, m4 = 0;
  for (double v : zv) m += v;
  m /= n;
  for (double v : zv) {
    m2 += (v - m) * (v - m);
    m4 += std::pow((v - m) / 3.0, 4);
  }
  EXPECT_NEAR(m, 1.0, 0.03);
  EXPECT_NEAR(std::sqrt(m2 / n), 3.0, 0.03);
  EXPECT_NEAR(m4 / n, 3.0, 0.1) << "a normal's kurtosis is 3";
  const double beyond_2sigma = std::count_if(zv.begin(), zv.end(), [](double v) { return std::fabs(v - 1.0) > 6.0; });
  EXPECT_NEAR(beyond_2sigma / n, 0.0455, 0.003);

  Tensor b = Tensor::empty({n}, DType::u8);
  bernoulli_(b, g, 0.3);
  const std::vector<uint8_t> bv = b.to_vector<uint8_t>();
  EXPECT_TRUE(std::all_of(bv.begin(), bv.end(), [](uint8_t v) { return v <= 1; }));
  EXPECT_NEAR(std::accumulate(bv.begin(), bv.end(), 0.0) / n, 0.3, 0.005);
}

TEST(Random, NonContiguousTargetsGetRowMajorValues) {
  Generator g1(9), g2(9);
  Tensor base = Tensor::zeros({4, 6});
  Tensor view = base.transpose(0, 1);
  uniform_(view, g1);
  Tensor ref = Tensor::empty({6, 4});
  uniform_(ref, g2);
  EXPECT_EQ(view.to_vector<float>(), ref.to_vector<float>());
}

TEST(Random, RandpermIsAPermutationAndReproducible) {
  Generator g(123), h(123);
  const std::vector<int64_t> p = randperm(1000, g).to_vector<int64_t>();
  EXPECT_EQ(p, randperm(1000, h).to_vector<int64_t>());
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[i], i);
  int fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed += p[i] == i;
  EXPECT_LT(fixed, 10) << "a random permutation has about one fixed point";
  EXPECT_TRUE(randperm(0, g).to_vector<int64_t>().empty());
  std::vector<std::string> names = {"a", "b", "c", "d"};
  Generator s(1);
  shuffle(names, s);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(Random, BadArgumentsAreRejected) {
  Generator g(1);
  Tensor t = Tensor::empty({4});
  EXPECT_THROW(uniform_(t, g, 1.0, 0.0), Error);
  EXPECT_THROW(normal_(t, g, 0.0, -1.0), Error);
  EXPECT_THROW(bernoulli_(t, g, 1.5), Error);
  Tensor i = Tensor::empty({4}, DType::i32);
  EXPECT_THROW(normal_(i, g), Error);
  EXPECT_THROW(randperm(-1, g), Error);
}

TEST(Random, CudaIsBitIdenticalToCpu) {
  SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int64_t n : {1, 7, 1031, 1 << 20}) {
      Generator gc(77, 2), gg(77, 2);
      Tensor c = Tensor::empty({n}, dtype), d = Tensor::empty({n}, dtype, Device::cuda());
      uniform_(c, gc, -1.0, 3.0);
      uniform_(d, gg, -1.0, 3.0);
      EXPECT_EQ(c.to_vector<double>(), d.to_vector<double>()) << "uniform " << dtype_name(dtype) << " n=" << n;
      normal_(c, gc, 0.5, 2.0);
      normal_(d, gg, 0.5, 2.0);
      EXPECT_EQ(c.to_vector<double>(), d.to_vector<double>()) << "normal " << dtype_name(dtype) << " n=" << n;
      bernoulli_(c, gc, 0.25);
      bernoulli_(d, gg, 0.25);
      EXPECT_EQ(c.to_vector<double>(), d.to_vector<double>()) << "bernoulli " << dtype_name(dtype) << " n=" << n;
    }
  }
  for (int64_t n : {1, 2, 255, 4097, 100000}) {
    Generator gc(31), gg(31);
    const Tensor pc = randperm(n, gc), pg = randperm(n, gg, Device::cuda());
    EXPECT_EQ(pc.to_vector<int64_t>(), pg.to_vector<int64_t>()) << n;
    EXPECT_EQ(inverse_permutation(pc).to_vector<int64_t>(), inverse_permutation(pg).to_vector<int64_t>()) << n;
  }
}

// randperm with the stream moved by a value in memory equals randperm on the explicit stream
// (gen.stream() + offset), from the same counter, and advances the counter as randperm does.
void check_offset_randperm(Device device) {
  for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{1000003}, int64_t{-2}}) {
    for (int64_t n : {1, 2, 255, 1031}) {
      Generator moved(41, 7), explicit_stream(41, 7 + static_cast<uint64_t>(offset));
      moved.set_offset(3);
      explicit_stream.set_offset(3);
      const Tensor stream_offset = Tensor::full({1}, static_cast<double>(offset), DType::i64, device);
      const Tensor p = randperm(n, moved, device, stream_offset);
      EXPECT_EQ(p.device(), device);
      EXPECT_EQ(p.to_vector<int64_t>(), randperm(n, explicit_stream, device).to_vector<int64_t>())
          << device.str() << ", offset " << offset << ", n " << n;
      EXPECT_EQ(moved.offset(), explicit_stream.offset()) << "the counter advances as randperm's";
      EXPECT_EQ(moved.stream(), 7u) << "the generator's own stream is unchanged";
    }
  }
}

TEST(Random, RandpermWithAStreamOffsetIsTheRandpermOfTheMovedStream) { check_offset_randperm(Device::cpu()); }

TEST(Random, CudaRandpermWithAStreamOffsetIsTheRandpermOfTheMovedStream) {
  SKIP_WITHOUT_CUDA();
  check_offset_randperm(Device::cuda());
  // And CUDA's equals the CPU's for the same offset.
  Generator gc(5, 9), gg(5, 9);
  const Tensor pc = randperm(4097, gc, Device::cpu(), Tensor::full({1}, 12.0, DType::i64));
  const Tensor pg = randperm(4097, gg, Device::cuda(), Tensor::full({1}, 12.0, DType::i64, Device::cuda()));
  EXPECT_EQ(pc.to_vector<int64_t>(), pg.to_vector<int64_t>());
}

TEST(Random, CudaRandpermReadsTheStreamOffsetOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  // One offset tensor changed on the device between two draws from the same counter (a captured
  // step's counter is the same at every replay): different permutations, no host read.
  Tensor stream_offset = Tensor::zeros({1}, DType::i64, Device::cuda());
  Generator g(17, 100);
  const uint64_t reads = host_read_count();
  const Tensor first = randperm(64, g, Device::cuda(), stream_offset);
  stream_offset.fill_(1.0);
  g.set_offset(0);
  const Tensor second = randperm(64, g, Device::cuda(), stream_offset);
  EXPECT_EQ(host_read_count(), reads) << "the offset must be read by the kernel, never by the host";
  Generator next(17, 101);
  EXPECT_EQ(second.to_vector<int64_t>(), randperm(64, next, Device::cuda()).to_vector<int64_t>());
  EXPECT_NE(first.to_vector<int64_t>(), second.to_vector<int64_t>());
}

TEST(Random, RandpermRefusesAStreamOffsetItCannotRead) {
  Generator g(1);
  std::string msg = error_of([&] { randperm(4, g, Device::cpu(), Tensor::zeros({1}, DType::i32)); });
  EXPECT_NE(msg.find("one-element i64"), std::string::npos) << msg;
  msg = error_of([&] { randperm(4, g, Device::cpu(), Tensor::zeros({2}, DType::i64)); });
  EXPECT_NE(msg.find("one-element i64"), std::string::npos) << msg;
  msg = error_of([&] { randperm(4, g, Device::cpu(), Tensor()); });
  EXPECT_NE(msg.find("stream_offset"), std::string::npos) << msg;
  if (cuda_device_count() > 0) {
    msg = error_of([&] { randperm(4, g, Device::cuda(), Tensor::zeros({1}, DType::i64)); });
    EXPECT_NE(msg.find("permutation's device"), std::string::npos) << msg;
  }
}

TEST(Random, InversePermutationUndoesTheShuffle) {
  Generator g(8);
  const Tensor perm = randperm(1000, g);
  const std::vector<int64_t> p = perm.to_vector<int64_t>(), inv = inverse_permutation(perm).to_vector<int64_t>();
  for (int64_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(inv[static_cast<size_t>(p[static_cast<size_t>(i)])], i);
    EXPECT_EQ(p[static_cast<size_t>(inv[static_cast<size_t>(i)])], i);
  }
  EXPECT_EQ(inverse_permutation(Tensor::from_vector<int64_t>({2, 0, 1}, {3})).to_vector<int64_t>(),
            (std::vector<int64_t>{1, 2, 0}));
  EXPECT_THROW(inverse_permutation(Tensor::from_vector<int32_t>({0}, {1})), Error);
}

}  // namespace
}  // namespace engine::testing
