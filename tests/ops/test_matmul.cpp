// test_matmul.cpp - the GEMM paths against the naive loop: OpenBLAS at sizes beyond the
// conformance cases, every transpose combination, leading dimensions wider than the matrix, and
// views that cannot be folded into a flag.
#include <gtest/gtest.h>

#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

TEST(Matmul, BlasMatchesTheNaiveLoop) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t M = 67, N = 45, K = 131;
      Tensor a = make_input({ta ? Shape{K, M} : Shape{M, K}}, 1, DType::f64, Device::cpu());
      Tensor b = make_input({tb ? Shape{N, K} : Shape{K, N}}, 2, DType::f64, Device::cpu());
      std::vector<double> naive(M * N), blas(M * N);
      matmul_forward_cpu<double>(naive.data(), a.data<double>(), b.data<double>(), M, N, K, ta, tb, a.size(1),
                                 b.size(1), N);
      if (!matmul_forward_cpu_blas<double>(blas.data(), a.data<double>(), b.data<double>(), M, N, K, ta, tb, a.size(1),
                                           b.size(1), N))
        GTEST_SKIP() << "this build has no BLAS";
      for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(blas[i], naive[i], 1e-12) << "ta " << ta << " tb " << tb << " at " << i;
    }
  }
}

TEST(Matmul, NaiveLoopComputesAKnownProduct) {
  // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] = [[19, 22], [43, 50]], written into a C with ldc 3.
  const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
  float c[6] = {-1, -1, -1, -1, -1, -1};
  matmul_forward_cpu<float>(c, a, b, 2, 2, 2, false, false, 2, 2, 3);
  EXPECT_EQ(std::vector<float>(c, c + 6), (std::vector<float>{19, 22, -1, 43, 50, -1}));
}

TEST(Matmul, ViewsThatCannotBeFoldedAreCopied) {
  Tensor base = make_input({{6, 10}}, 3, DType::f64, Device::cpu());
  Tensor cols = base.slice(1, 0, 10, 2);  // strides (10, 2): neither row- nor column-major
  Tensor b = make_input({{5, 3}}, 4, DType::f64, Device::cpu());
  EXPECT_TRUE(all_close(matmul(cols, b), matmul(cols.contiguous(), b), 1e-12, 1e-12));
}

TEST(Matmul, ShapeErrorsNameBothShapes) {
  try {
    matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}));
    FAIL() << "inner dims 3 and 4 differ";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(4, 5)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3})), Error);
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}, DType::f64)), Error) << "dtype mismatch";
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}, DType::i32), Tensor::zeros({3, 2}, DType::i32)), Error);
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  Tensor c = matmul(Tensor::zeros({3, 0}), Tensor::zeros({0, 2}));
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>(6, 0.0f));
}

TEST(Ops, MismatchesGiveClearErrors) {
  Tensor a = Tensor::zeros({2, 3});
  try {
    add(a, Tensor::zeros({2, 4}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not broadcast"), std::string::npos) << e.what();
  }
  EXPECT_THROW(add(a, Tensor::zeros({2, 1})), Error) << "broadcasting runs over leading dims only";
  EXPECT_THROW(mul(a, Tensor::zeros({2, 3}, DType::f64)), Error);
  EXPECT_THROW(sum(a, 2), Error);
  EXPECT_THROW(relu(Tensor::zeros({2}, DType::u8)), Error);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(add(a, Tensor::zeros({3}, DType::f32, Device::cuda())), Error);
  }
}

TEST(Ops, DeviceMismatchIsCaughtBeforeAnyWork) {
  // A tensor that claims to live on cuda:0 (over host memory it never touches): the check at the
  // op boundary must refuse it before any kernel or copy runs, on machines with or without a GPU.
  float host[3] = {1, 2, 3};
  Tensor fake_gpu = Tensor::from_storage(Storage::wrap(host, sizeof(host), Device::cuda(), {}), {3}, {1}, 0, DType::f32);
  try {
    add(Tensor::zeros({3}), fake_gpu);
    FAIL() << "cpu + cuda must be refused";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("one device"), std::string::npos) << what;
    EXPECT_NE(what.find("cuda:0"), std::string::npos) << what;
    EXPECT_NE(what.find(".to(device)"), std::string::npos) << "says how to fix it: " << what;
  }
  EXPECT_THROW(matmul(Tensor::zeros({3, 1}), fake_gpu.view({1, 3})), Error);
}

TEST(Matmul, CudaMatchesCpuAtSize) {
  SKIP_WITHOUT_CUDA();
  Tensor a = make_input({{257, 129}}, 5, DType::f32, Device::cpu());
  Tensor b = make_input({{129, 65}, -1, 1, Layout::Transposed}, 6, DType::f32, Device::cpu());
  EXPECT_TRUE(all_close(matmul(a.to(Device::cuda()), b.to(Device::cuda())), matmul(a, b), 1e-4, 1e-4));
}

}  // namespace
}  // namespace engine::testing
