// test_cross_entropy.cpp - the classifier's loss against values computed by hand: the mean loss of
// a 2 x 3 case and its gradient, a row with a logit of 1000 (finite, exact), one class, the
// upstream gradient's scale, out-of-range labels (refused at the Tensor level, NaN at the raw
// level, the contract CUDA shares), the shape, dtype and device messages, and on CUDA the repeat
// to the bit. Finite differences and CUDA against CPU are the conformance cases.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

Tensor labels_of(const std::vector<int64_t>& values, Device device = Device::cpu()) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, device);
}

// logits [[1, 2, 3], [1, 1, 1]], labels [2, 0].
Tensor two_by_three(DType dtype) { return Tensor::from_vector<double>({1, 2, 3, 1, 1, 1}, {2, 3}).to(dtype); }

// By hand: row 0, lse = log(e + e^2 + e^3) = 3.40760596444438, loss 0.40760596444438013; row 1,
// three equal logits, loss log 3 = 1.0986122886681098; the mean 0.753109126556245.
constexpr double kRow0Loss = 0.40760596444438013, kRow1Loss = 1.0986122886681098;
// softmax(1, 2, 3) = e^k / (e + e^2 + e^3).
constexpr double kSoftmax123[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};

TEST(CrossEntropy, TwoByThreeLossByHand) {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor loss = cross_entropy(two_by_three(dtype), labels_of({2, 0}));
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_EQ(loss.dtype(), dtype);
    const double tol = dtype == DType::f64 ? 1e-15 : 1e-7;
    EXPECT_NEAR(loss.item(), (kRow0Loss + kRow1Loss) / 2, tol) << dtype_name(dtype);
    EXPECT_NEAR(loss.item(), 0.753109126556245, tol) << dtype_name(dtype);
  }
}

TEST(CrossEntropy, TwoByThreeGradientByHand) {
  // dz_ij = (softmax_ij - [j == y_i]) / N with N = 2 and the upstream gradient 1.
  const std::vector<double> expected = {kSoftmax123[0] / 2, kSoftmax123[1] / 2, (kSoftmax123[2] - 1) / 2,
                                        (1.0 / 3 - 1) / 2,  1.0 / 6,            1.0 / 6};
  for (DType dtype : {DType::f64, DType::f32}) {
    Tensor logits = two_by_three(dtype).requires_grad_(true);
    cross_entropy(logits, labels_of({2, 0})).backward();
    const double tol = dtype == DType::f64 ? 1e-15 : 1e-7;
    EXPECT_TRUE(all_close(logits.grad(), Tensor::from_vector(expected, {2, 3}).to(dtype), tol, tol))
        << dtype_name(dtype);
  }
}

TEST(CrossEntropy, UpstreamGradientScalesTheGradient) {
  // d(2.5 loss)/dz = 2.5 dz: the node reads the upstream value, not an assumed 1.
  Tensor logits = two_by_three(DType::f64).requires_grad_(true);
  mul_scalar(cross_entropy(logits, labels_of({2, 0})), 2.5).backward();
  const std::vector<double> grad = logits.grad().to_vector<double>();
  EXPECT_NEAR(grad[2], 2.5 * (kSoftmax123[2] - 1) / 2, 1e-15);
  EXPECT_NEAR(grad[4], 2.5 / 6, 1e-15);
}

TEST(CrossEntropy, LargeLogitIsFiniteAndExact) {
  // Row (1000, 0): lse = 1000 + log(1 + e^-1000) = 1000 in any precision; without the maximum
  // subtracted, e^1000 would overflow to inf.
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tensor logits = Tensor::from_vector<double>({1000, 0}, {1, 2}).to(dtype);
    EXPECT_EQ(cross_entropy(logits, labels_of({1})).item(), 1000.0) << dtype_name(dtype);
    EXPECT_EQ(cross_entropy(logits, labels_of({0})).item(), 0.0) << dtype_name(dtype);

    Tensor x = logits.clone().requires_grad_(true);
    cross_entropy(x, labels_of({1})).backward();
    // softmax = (1, e^-1000 = 0): the gradient is (1, -1), finite.
    EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.0, -1.0})) << dtype_name(dtype);
  }
}

TEST(CrossEntropy, OneClassIsZeroLossAndGradient) {
  Tensor logits = Tensor::from_vector<double>({-3, 0.5, 7}, {3, 1}).requires_grad_(true);
  const Tensor loss = cross_entropy(logits, labels_of({0, 0, 0}));
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  EXPECT_EQ(logits.grad().to_vector<double>(), (std::vector<double>{0, 0, 0}));
}

TEST(CrossEntropy, TransposedLogitsAreReadAsTheirValues) {
  // [[1, 1], [2, 1], [3, 1]] transposed is the 2 x 3 case.
  const Tensor stored = Tensor::from_vector<double>({1, 1, 2, 1, 3, 1}, {3, 2});
  EXPECT_NEAR(cross_entropy(stored.transpose(0, 1), labels_of({2, 0})).item(), (kRow0Loss + kRow1Loss) / 2, 1e-15);
}

TEST(CrossEntropy, OutOfRangeLabelsAreRefused) {
  const Tensor logits = two_by_three(DType::f32);
  const std::string too_big = error_of([&] { cross_entropy(logits, labels_of({0, 3})); });
  EXPECT_NE(too_big.find("labels[1] = 3 is not a class of logits with C = 3 columns"), std::string::npos) << too_big;
  const std::string negative = error_of([&] { cross_entropy(logits, labels_of({-1, 0})); });
  EXPECT_NE(negative.find("labels[0] = -1"), std::string::npos) << negative;
}

TEST(CrossEntropy, RawLevelWritesNanForAnOutOfRangeLabel) {
  // The contract the CUDA kernels share: the row's loss, hence the mean, and its gradient are NaN;
  // the other rows' gradients are unaffected.
  const std::vector<double> logits = {1, 2, 3, 1, 1, 1};
  const std::vector<int64_t> labels = {2, 7};
  double loss = 0, lse[2] = {0, 0}, dlogits[6] = {0, 0, 0, 0, 0, 0};
  const double dloss = 1.0;
  cross_entropy_forward_cpu<double>(&loss, lse, logits.data(), labels.data(), 2, 3);
  EXPECT_TRUE(std::isnan(loss));
  EXPECT_NEAR(lse[0], 3.40760596444438, 1e-14);
  cross_entropy_backward_cpu<double>(dlogits, &dloss, logits.data(), lse, labels.data(), 2, 3);
  EXPECT_NEAR(dlogits[2], (kSoftmax123[2] - 1) / 2, 1e-15);
  for (int j = 3; j < 6; ++j) EXPECT_TRUE(std::isnan(dlogits[j])) << j;
}

TEST(CrossEntropy, ShapeDtypeAndDeviceMessages) {
  const Tensor logits = two_by_three(DType::f32);
  const std::string one_d = error_of([&] { cross_entropy(Tensor::zeros({6}), labels_of({0})); });
  EXPECT_NE(one_d.find("expected logits (N, C)"), std::string::npos) << one_d;
  const std::string no_rows = error_of([&] { cross_entropy(Tensor::zeros({0, 3}), Tensor::zeros({0}, DType::i64)); });
  EXPECT_NE(no_rows.find("at least one row and one class"), std::string::npos) << no_rows;
  const std::string float_labels = error_of([&] { cross_entropy(logits, Tensor::zeros({2})); });
  EXPECT_NE(float_labels.find("of dtype i64"), std::string::npos) << float_labels;
  const std::string wrong_count = error_of([&] { cross_entropy(logits, labels_of({0, 1, 2})); });
  EXPECT_NE(wrong_count.find("expected labels (N) = (2)"), std::string::npos) << wrong_count;
  const std::string int_logits =
      error_of([&] { cross_entropy(Tensor::zeros({2, 3}, DType::i64), labels_of({0, 1})); });
  EXPECT_NE(int_logits.find("f32 or f64"), std::string::npos) << int_logits;
}

TEST(CrossEntropyCuda, LabelsOnAnotherDeviceAreRefused) {
  SKIP_WITHOUT_CUDA();
  const Tensor logits = two_by_three(DType::f32).to(Device::cuda());
  const std::string message = error_of([&] { cross_entropy(logits, labels_of({2, 0})); });
  EXPECT_NE(message.find("expected the labels on the logits' device"), std::string::npos) << message;
}

TEST(CrossEntropyCuda, RepeatsToTheBitAndMatchesTheHandValues) {
  SKIP_WITHOUT_CUDA();
  Tensor logits = Tensor::empty({37, 1000}, DType::f32);
  Generator gen(5, 0xCE);
  uniform_(logits, gen, -8.0, 8.0);
  std::vector<int64_t> labels(37);
  for (int64_t i = 0; i < 37; ++i) labels[i] = (i * 271) % 1000;
  const Tensor gpu_logits = logits.to(Device::cuda()), gpu_labels = labels_of(labels, Device::cuda());
  const std::vector<float> first = cross_entropy(gpu_logits, gpu_labels).to_vector<float>();
  const std::vector<float> second = cross_entropy(gpu_logits, gpu_labels).to_vector<float>();
  EXPECT_EQ(first, second);

  Tensor small = two_by_three(DType::f32).to(Device::cuda()).requires_grad_(true);
  const Tensor loss = cross_entropy(small, labels_of({2, 0}, Device::cuda()));
  EXPECT_NEAR(loss.item(), (kRow0Loss + kRow1Loss) / 2, 1e-7);
  loss.backward();
  EXPECT_NEAR(small.grad().to_vector<float>()[2], (kSoftmax123[2] - 1) / 2, 1e-7);
}

TEST(CrossEntropyCuda, OutOfRangeLabelGivesNan) {
  SKIP_WITHOUT_CUDA();
  const Tensor logits = two_by_three(DType::f32).to(Device::cuda());
  EXPECT_TRUE(std::isnan(cross_entropy(logits, labels_of({2, 3}, Device::cuda())).item()));
}

}  // namespace
}  // namespace engine::testing
