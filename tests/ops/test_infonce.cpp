// test_infonce.cpp - the fused InfoNCE loss against the test vectors of METHOD.md (METHOD.md 12.5,
// vectors 21-24), against the same loss composed of separate ops, the uniform-logits property, the
// accuracy counts and their tie rule, gradient isolation (only q), a retained graph walked twice,
// and the shape messages. Finite differences and CUDA against CPU are the conformance cases.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

constexpr int64_t kQueue = 65536;  // the reference's K

Tensor f64(const std::vector<double>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

// (1, 4) basis row e_c.
Tensor basis_row(int c) {
  std::vector<double> v(4, 0.0);
  v[c] = 1.0;
  return f64(v, {1, 4});
}

// queue (4, K) whose columns are unit vectors along e_1, e_2, e_3 in turn: orthogonal to e_0.
Tensor queue_orthogonal_to_e0(int64_t K) {
  std::vector<double> v(4 * K, 0.0);
  for (int64_t j = 0; j < K; ++j) v[(1 + j % 3) * K + j] = 1.0;
  return f64(v, {4, K});
}

double loss_of(const InfoNceResult& r) { return r.loss.item(); }
int64_t top1(const InfoNceResult& r) { return r.correct.to_vector<int64_t>()[0]; }
int64_t top5(const InfoNceResult& r) { return r.correct.to_vector<int64_t>()[1]; }

TEST(InfoNce, Vector21AllLogitsZero) {
  // q orthogonal to k, to every queue column and to the hard negative: all 65538 logits are 0.
  const Tensor hard = basis_row(3).reshape({1, 1, 4});
  for (double temperature : {0.2, 0.07}) {
    const InfoNceResult r =
        infonce(basis_row(0), basis_row(1), queue_orthogonal_to_e0(kQueue), hard, {temperature, 1.0});
    EXPECT_NEAR(loss_of(r), std::log(65538.0), 1e-12) << "T " << temperature;
    EXPECT_NEAR(loss_of(r), 11.090385, 1e-6);
    // Every negative ties the positive; ties go to the positive.
    EXPECT_EQ(top1(r), 1);
    EXPECT_EQ(top5(r), 1);
    EXPECT_EQ(r.rows, 1);
  }
}

TEST(InfoNce, Vector22PositiveAlignedNegativesOrthogonal) {
  const Tensor q = basis_row(0), queue = queue_orthogonal_to_e0(kQueue);
  const InfoNceResult with_hard = infonce(q, q, queue, basis_row(2).reshape({1, 1, 4}), {0.2, 1.0});
  EXPECT_NEAR(loss_of(with_hard), 6.0926322, 1e-6);  // ln(1 + (K + 1) e^-5)
  const InfoNceResult no_hard = infonce(q, q, queue, Tensor(), {0.07, 1.0});
  EXPECT_NEAR(loss_of(no_hard), 0.0401355, 1e-6);  // ln(1 + K e^(-1/0.07))
  EXPECT_EQ(top1(no_hard), 1);
}

TEST(InfoNce, Vector23HardNegativeEqualsThePositive) {
  // q = k = t, alpha = 2: the hard logit is 10 against the positive's 5.
  const Tensor q = basis_row(0);
  const InfoNceResult r = infonce(q, q, queue_orthogonal_to_e0(kQueue), q.reshape({1, 1, 4}), {0.2, 2.0});
  EXPECT_NEAR(loss_of(r), 6.3818012, 1e-6);  // -5 + ln(e^5 + K + e^10)
  EXPECT_EQ(top1(r), 0);
  EXPECT_EQ(top5(r), 1);
}

// Vector 24: C = 4, K = 3, n_h = 1, alpha = 2, T = 0.2, raw head output u = (1, 2, 0, -1).
struct Vector24 {
  const double r = 1.0 / std::sqrt(2.0), t_norm = std::sqrt(5.25);
  Tensor u = f64({1, 2, 0, -1}, {1, 4});
  Tensor k = f64({r, r, 0, 0}, {1, 4});
  // Columns n1 = (0, 0, 1, 0), n2 = (0, 1, 0, 1)/sqrt(2), n3 = (-1, 0, 0, 0), stored (D, K).
  Tensor queue = f64({0, 0, -1, 0, r, 0, 1, 0, 0, 0, r, 0}, {4, 3});
  Tensor hard = f64({1 / t_norm, 2 / t_norm, 0.5 / t_norm, 0}, {1, 1, 4});
  InfoNceOptions opt{0.2, 2.0};
};

TEST(InfoNce, Vector24LossAndGradients) {
  Vector24 v;
  v.u.requires_grad_(true);
  const Tensor q = l2_normalize(v.u);
  EXPECT_TRUE(all_close(q, f64({0.4082483, 0.8164966, 0, -0.4082483}, {1, 4}), 1e-7, 0));

  // dL/dq with respect to the normalised q, as a leaf.
  Tensor q_leaf = q.detach().clone();
  q_leaf.requires_grad_(true);
  const InfoNceResult at_q = infonce(q_leaf, v.k, v.queue, v.hard, v.opt);
  EXPECT_NEAR(loss_of(at_q), 4.5895157, 1e-6);
  at_q.loss.backward();
  EXPECT_TRUE(all_close(q_leaf.grad(), f64({0.8171866, 5.1361704, 2.1591158, 0.0020024}, {1, 4}), 1e-6, 0));

  // dL/du through l2_normalize.
  const InfoNceResult at_u = infonce(q, v.k, v.queue, v.hard, v.opt);
  at_u.loss.backward();
  EXPECT_TRUE(all_close(v.u.grad(), f64({-0.4207954, 0.5880119, 0.8814553, 0.7552279}, {1, 4}), 1e-6, 0));
  // The hard-negative logit (8.9) beats the positive (4.3).
  EXPECT_EQ(top1(at_u), 0);
  EXPECT_EQ(top5(at_u), 1);
}

TEST(InfoNce, Vector24RawLevelLogits) {
  // The raw forward's saved dot products, scaled as the logits table: (4.3301268 | 0, 1.4433756,
  // -2.0412414 | 8.9087076). METHOD.md's figures carry f32 rounding (8.9087076 is 8.90870806 in
  // double), so they are compared to 1e-6.
  Vector24 v;
  const std::vector<double> q = l2_normalize(v.u).to_vector<double>();
  const std::vector<double> k = v.k.to_vector<double>(), queue = v.queue.to_vector<double>(),
                            hard = v.hard.to_vector<double>();
  double loss = 0, lse = 0;
  int64_t correct[2] = {-1, -1};
  std::vector<double> key_dots(2), queue_dots(3);
  infonce_forward_cpu<double>(&loss, correct, &lse, key_dots.data(), queue_dots.data(), q.data(), k.data(),
                              queue.data(), hard.data(), 1, 4, 3, 1, 2.0, 0.2);
  EXPECT_NEAR(key_dots[0] / 0.2, 4.3301268, 1e-6);
  EXPECT_NEAR(2.0 * key_dots[1] / 0.2, 8.9087076, 1e-6);
  EXPECT_NEAR(queue_dots[0] / 0.2, 0.0, 1e-15);
  EXPECT_NEAR(queue_dots[1] / 0.2, 1.4433756, 1e-6);
  EXPECT_NEAR(queue_dots[2] / 0.2, -2.0412414, 1e-6);
  EXPECT_NEAR(loss, 4.5895157, 1e-6);
  EXPECT_NEAR(loss, lse - key_dots[0] / 0.2, 1e-14);
  EXPECT_EQ(correct[0], 0);
  EXPECT_EQ(correct[1], 1);
}

// The same loss from separate ops, with autograd through each: the specification the fused op
// must equal.
Tensor composed_loss(const Tensor& q, const Tensor& k, const Tensor& queue, const Tensor& hard, double alpha,
                     double temperature) {
  const int64_t N = q.size(0), D = q.size(1);
  const Tensor z0 = mul_scalar(sum(mul(q, k), 1), 1.0 / temperature);  // (N)
  Tensor sum_exp = add(sum(exp(mul_scalar(matmul(q, queue), 1.0 / temperature)), 1), exp(z0));
  for (int64_t h = 0; h < hard.size(1); ++h) {
    const Tensor t = hard.slice(1, h, h + 1).reshape({N, D});
    sum_exp = add(sum_exp, exp(mul_scalar(sum(mul(q, t), 1), alpha / temperature)));
  }
  return mean(sub(log(sum_exp), z0));
}

void check_against_composed(DType dtype, double tol) {
  const int64_t N = 6, D = 8, K = 13, n_h = 2;
  const double alpha = 1.7, temperature = 0.3;
  Tensor q = make_input({{N, D}}, 1, dtype, Device::cpu());
  const Tensor k = make_input({{N, D}}, 2, dtype, Device::cpu());
  const Tensor queue = make_input({{D, K}}, 3, dtype, Device::cpu());
  const Tensor hard = make_input({{N, n_h, D}}, 4, dtype, Device::cpu());
  q.requires_grad_(true);
  const Tensor fused = infonce(q, k, queue, hard, {temperature, alpha}).loss;
  fused.backward();
  const Tensor fused_dq = q.grad().clone();
  q.set_grad(Tensor());
  const Tensor composed = composed_loss(q, k, queue, hard, alpha, temperature);
  composed.backward();
  EXPECT_NEAR(fused.item(), composed.item(), tol * std::fabs(composed.item()));
  EXPECT_TRUE(all_close(fused_dq, q.grad(), tol, tol));
}

TEST(InfoNce, MatchesTheComposedOpsDouble) { check_against_composed(DType::f64, 1e-12); }
TEST(InfoNce, MatchesTheComposedOpsFloat) { check_against_composed(DType::f32, 1e-5); }

TEST(InfoNce, HighTemperatureGivesTheUniformLoss) {
  // A fresh model: unit vectors in random directions, T = 1e4, so every |z| <= 1e-4 and the loss
  // is ln(1 + K + n_h) to within about that.
  const int64_t N = 16, D = 32, K = 4096, n_h = 1;
  const Tensor q = l2_normalize(make_input({{N, D}}, 5, DType::f64, Device::cpu()));
  const Tensor k = l2_normalize(make_input({{N, D}}, 6, DType::f64, Device::cpu()));
  const Tensor queue = l2_normalize(make_input({{K, D}}, 7, DType::f64, Device::cpu())).transpose(0, 1);
  const Tensor hard = l2_normalize(make_input({{N * n_h, D}}, 8, DType::f64, Device::cpu())).reshape({N, n_h, D});
  const double loss = infonce(q, k, queue, hard, {1e4, 2.0}).loss.item();
  EXPECT_NEAR(loss, std::log(1.0 + K + n_h), 2e-4);
  EXPECT_NE(loss, std::log(1.0 + K + n_h)) << "the logits are small, not zero";
}

// Five rows, q_i = e_0, queue column j = (j/8, 0) (dot j/8, exact in binary), alpha = 2:
//   row 0: positive 1.0                    rank 0
//   row 1: positive 0.6 (0.625, 0.75, 0.875 beat it)          rank 3
//   row 2: positive 0.2 (0.25 ... 0.875 beat it)              rank 6
//   row 3: positive 0.875, tied with column 7 (ties go to the positive)   rank 0
//   row 4: positive 0.9, hard negative 2 * 0.5 = 1.0 beats it              rank 1
template <typename T>
void check_accuracy_counts(Device device) {
  const int64_t N = 5, D = 2, K = 8;
  std::vector<double> q(N * D, 0.0), k(N * D, 0.0), queue(D * K, 0.0), hard(N * D, 0.0);
  const double positive[N] = {1.0, 0.6, 0.2, 0.875, 0.9};
  for (int64_t i = 0; i < N; ++i) {
    q[i * D] = 1.0;
    k[i * D] = positive[i];
  }
  for (int64_t j = 0; j < K; ++j) queue[j] = static_cast<double>(j) / 8;
  hard[4 * D] = 0.5;
  auto make = [&](const std::vector<double>& v, const Shape& s) { return f64(v, s).to(dtype_of<T>()).to(device); };
  const InfoNceResult r = infonce(make(q, {N, D}), make(k, {N, D}), make(queue, {D, K}), make(hard, {N, 1, D}),
                                  {0.2, 2.0});
  EXPECT_EQ(top1(r), 2);
  EXPECT_EQ(top5(r), 4);
  EXPECT_EQ(r.rows, 5);
}

TEST(InfoNce, AccuracyCountsDouble) { check_accuracy_counts<double>(Device::cpu()); }
TEST(InfoNce, AccuracyCountsFloat) { check_accuracy_counts<float>(Device::cpu()); }
TEST(InfoNce, AccuracyCountsCuda) {
  SKIP_WITHOUT_CUDA();
  check_accuracy_counts<float>(Device::cuda());
}

TEST(InfoNce, GradientReachesOnlyQ) {
  Tensor q = make_input({{3, 4}}, 9, DType::f64, Device::cpu());
  Tensor k = make_input({{3, 4}}, 10, DType::f64, Device::cpu());
  Tensor queue = make_input({{4, 5}}, 11, DType::f64, Device::cpu());
  Tensor hard = make_input({{3, 1, 4}}, 12, DType::f64, Device::cpu());
  k.requires_grad_(true);
  queue.requires_grad_(true);
  hard.requires_grad_(true);
  EXPECT_FALSE(infonce(q, k, queue, hard).loss.requires_grad()) << "k, queue and hard are constants";
  q.requires_grad_(true);
  infonce(q, k, queue, hard).loss.backward();
  EXPECT_TRUE(q.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  EXPECT_FALSE(queue.grad().defined());
  EXPECT_FALSE(hard.grad().defined());
}

TEST(InfoNce, RetainedGraphGivesTheSameGradientTwice) {
  // The first backward turns the saved dot products into probabilities in place; the second
  // must recompute them, not reuse the probabilities.
  Tensor q = make_input({{3, 4}}, 13, DType::f64, Device::cpu());
  q.requires_grad_(true);
  const Tensor loss = infonce(q, make_input({{3, 4}}, 14, DType::f64, Device::cpu()),
                              make_input({{4, 6}}, 15, DType::f64, Device::cpu()), Tensor(), {0.2, 1.0})
                          .loss;
  loss.backward(Tensor(), true);
  const Tensor once = q.grad().clone();
  loss.backward();
  EXPECT_TRUE(all_close(q.grad(), mul_scalar(once, 2.0), 1e-14, 1e-14));
}

// The CUDA path at the reference's queue length against the CPU (conformance covers small sizes).
// The keys are the queries plus noise, so that the positive wins some rows and not others: the
// top-1 and top-5 counts are then neither all zero nor all N, and a wrong count shows.
void check_cuda_matches_cpu_at_queue_length(int64_t N) {
  const int64_t D = 128, K = kQueue, n_h = 1;
  auto unit_rows = [](Shape shape, uint64_t seed, Device device) {
    const int64_t dim = shape.back();
    return l2_normalize(make_input({{shape_numel(shape) / dim, dim}}, seed, DType::f32, device)).reshape(shape);
  };
  InfoNceResult results[2];
  Tensor grads[2];
  const Device devices[2] = {Device::cpu(), Device::cuda()};
  for (int d = 0; d < 2; ++d) {
    const Tensor q0 = unit_rows({N, D}, 16, devices[d]);
    // k = normalize(q + 0.4 noise): cos(q, k) about 0.93, against at most about 0.4 for the
    // best of 65536 queue columns; the hard negative t = normalize(q + 2 noise) has cos(q, t)
    // about 0.45 +- 0.08, so alpha 2 puts its logit at 0.9 +- 0.16 against the positive's 0.93:
    // it wins in about 4 rows of 10.
    const Tensor k = l2_normalize(add(q0, mul_scalar(unit_rows({N, D}, 17, devices[d]), 0.4)));
    Tensor q = q0.detach();
    q.requires_grad_(true);
    results[d] = infonce(q, k, unit_rows({K, D}, 18, devices[d]).transpose(0, 1),
                         l2_normalize(add(q0, mul_scalar(unit_rows({N, D}, 19, devices[d]), 2.0))).reshape({N, n_h, D}),
                         {0.2, 2.0});
    results[d].loss.backward();
    grads[d] = q.grad();
  }
  EXPECT_NEAR(results[1].loss.item(), results[0].loss.item(), 1e-4);
  EXPECT_EQ(top1(results[1]), top1(results[0]));
  EXPECT_EQ(top5(results[1]), top5(results[0]));
  EXPECT_GT(top1(results[0]), 0) << "the inputs should let the positive win some rows";
  EXPECT_LT(top1(results[0]), N) << "the inputs should let a negative win some rows";
  EXPECT_GE(top5(results[0]), top1(results[0]));
  EXPECT_TRUE(all_close(grads[1], grads[0], 1e-5, 1e-4));
}

TEST(InfoNce, CudaMatchesCpuAtReferenceQueueLength) {
  SKIP_WITHOUT_CUDA();
  check_cuda_matches_cpu_at_queue_length(16);
}

// The training step's shape: batch 256, K 65536, one hard negative per row.
TEST(InfoNce, CudaRealSizeMatchesCpuAtBatch256) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  check_cuda_matches_cpu_at_queue_length(256);
}

// The message of the error `fn` throws.
TEST(InfoNce, ShapeErrorsNameTheShapes) {
  const Tensor q = Tensor::zeros({3, 4}), queue = Tensor::zeros({4, 7});
  std::string msg = error_of([&] { infonce(q, Tensor::zeros({3, 5}), queue, Tensor()); });
  EXPECT_NE(msg.find("(3, 4)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(3, 5)"), std::string::npos) << msg;

  msg = error_of([&] { infonce(q, q, Tensor::zeros({5, 7}), Tensor()); });
  EXPECT_NE(msg.find("(5, 7)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("D = 4"), std::string::npos) << msg;

  for (const Shape& bad : {Shape{3, 2, 5}, Shape{2, 1, 4}, Shape{3, 4}}) {
    msg = error_of([&] { infonce(q, q, queue, Tensor::zeros(bad)); });
    EXPECT_NE(msg.find(shape_str(bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3, n_h, 4)"), std::string::npos) << msg;
  }

  EXPECT_THROW(infonce(q, q, queue, Tensor(), {0.0, 1.0}), Error) << "temperature 0";
  EXPECT_THROW(infonce(q, q, Tensor::zeros({4, 7}, DType::f64), Tensor()), Error) << "dtype mismatch";
  EXPECT_THROW(infonce(Tensor::zeros({0, 4}), Tensor::zeros({0, 4}), queue, Tensor()), Error) << "no rows";
}

}  // namespace
}  // namespace engine::testing
