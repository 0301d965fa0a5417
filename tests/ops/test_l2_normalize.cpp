// test_l2_normalize.cpp - l2_normalize against values worked out by hand: a 3-4-5 row, a zero row
// (the clamp: y = 0, dx = dy / eps), a row of norm 3; the 1-D form; the messages for bad input.
// Finite differences and CUDA against CPU are in the conformance cases (op_cases.cpp).
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// x rows: (3, 4, 0) of norm 5, (0, 0, 0), (1, -2, 2) of norm 3.
const std::vector<double> kX = {3, 4, 0, 0, 0, 0, 1, -2, 2};
const std::vector<double> kDy = {1, 0, 2, 1, 2, 3, 0, 3, 0};

template <typename T>
void check_hand_computed_rows(double tol) {
  Tensor x = Tensor::from_vector(kX, {3, 3}).to(dtype_of<T>());
  x.requires_grad_(true);
  const Tensor y = l2_normalize(x);
  const std::vector<double> expected_y = {0.6, 0.8, 0, 0, 0, 0, 1.0 / 3, -2.0 / 3, 2.0 / 3};
  EXPECT_TRUE(all_close(y, Tensor::from_vector(expected_y, {3, 3}).to(dtype_of<T>()), tol, tol));
  y.backward(Tensor::from_vector(kDy, {3, 3}).to(dtype_of<T>()));
  // Row 0: y.dy = 0.6, dx = (dy - 0.6 y) / 5.  Row 1: dy / 1e-12.  Row 2: y.dy = -2, dx = (dy + 2 y) / 3.
  const std::vector<double> dx = {0.128, -0.096, 0.4, 1e12, 2e12, 3e12, 2.0 / 9, 5.0 / 9, 4.0 / 9};
  EXPECT_TRUE(all_close(x.grad(), Tensor::from_vector(dx, {3, 3}).to(dtype_of<T>()), tol, tol));
}

TEST(L2Normalize, HandComputedRowsDouble) { check_hand_computed_rows<double>(1e-15); }
TEST(L2Normalize, HandComputedRowsFloat) { check_hand_computed_rows<float>(1e-6); }

TEST(L2Normalize, RawLevelWritesTheUnclampedNorms) {
  std::vector<double> y(9), norm(3);
  l2_normalize_forward_cpu<double>(y.data(), norm.data(), kX.data(), 3, 3, 1e-12);
  EXPECT_EQ(norm, (std::vector<double>{5, 0, 3}));
}

TEST(L2Normalize, OneDimensionalInputIsOneRow) {
  const Tensor y = l2_normalize(Tensor::from_vector<double>({0, -5, 12}, {3}));
  EXPECT_EQ(y.shape(), Shape{3});
  EXPECT_TRUE(all_close(y, Tensor::from_vector<double>({0, -5.0 / 13, 12.0 / 13}, {3}), 1e-15, 1e-15));
}

TEST(L2Normalize, LargeEpsClampsEveryRow) {
  // eps = 10 exceeds both norms: y = x / 10.
  const Tensor y = l2_normalize(Tensor::from_vector<double>({3, 4, 1, 0}, {2, 2}), 10.0);
  EXPECT_TRUE(all_close(y, Tensor::from_vector<double>({0.3, 0.4, 0.1, 0}, {2, 2}), 1e-15, 1e-15));
}

TEST(L2Normalize, RejectsOtherRanksAndEps) {
  try {
    l2_normalize(Tensor::zeros({2, 3, 4}));
    FAIL() << "a 3-D input must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3, 4)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(l2_normalize(Tensor::zeros({2, 3}), 0.0), Error);
  EXPECT_THROW(l2_normalize(Tensor::zeros({2, 3}, DType::i32)), Error);
}

}  // namespace
}  // namespace engine::testing
