// test_nt_xent.cpp - the fused NT-Xent loss against PyTorch's usual SimCLR formulation (the fixture
// of tools/make_nt_xent_fixtures.py), against the same loss composed of separate ops, the uniform
// loss of all-zero logits, the accuracy counts and their tie rule, a single image, gradient isolation
// (only z), a retained graph walked twice, the CUDA path at SimCLR's size, and the refusals' messages.
// Finite differences and CUDA against CPU at small sizes are the conformance cases (op_cases.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>

#include "engine/autograd.h"
#include "engine/serialize.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

Tensor f64(const std::vector<double>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

int64_t top1(const NtXentResult& r) { return r.correct.to_vector<int64_t>()[0]; }
int64_t top5(const NtXentResult& r) { return r.correct.to_vector<int64_t>()[1]; }

// ---- PyTorch's formulation (tools/make_nt_xent_fixtures.py), in float64 ----

const char* const kFixtureCases[] = {"b4_d8_hard2", "b3_d5_no_hard", "b2_d3_non_unit"};

// The fixture's cases run in `dtype` on `device`: the loss against PyTorch's to relative `loss_tol`,
// dz to atol = rtol = `grad_tol`, the counts exactly.
void check_against_fixture(DType dtype, Device device, double loss_tol, double grad_tol) {
  const SafetensorsFile f = load_safetensors(std::string(ENGINE_TEST_FIXTURES) + "/nt_xent/cases.safetensors");
  for (const std::string name : kFixtureCases) {
    SCOPED_TRACE(name);
    Tensor z = f.at(name + ".z").to(dtype).to(device);
    z.requires_grad_(true);
    const Tensor hard = f.contains(name + ".hard") ? f.at(name + ".hard").to(dtype).to(device) : Tensor();
    const NtXentOptions opt{f.at(name + ".temperature").item(), f.at(name + ".alpha").item()};
    const NtXentResult r = nt_xent(z, hard, opt);
    const double expected = f.at(name + ".loss").item();
    EXPECT_NEAR(r.loss.item(), expected, loss_tol * std::fabs(expected));
    EXPECT_EQ(r.correct.to_vector<int64_t>(), f.at(name + ".correct").to_vector<int64_t>());
    EXPECT_EQ(r.rows, z.size(0));
    r.loss.backward();
    EXPECT_TRUE(all_close(z.grad().to(DType::f64), f.at(name + ".dz"), grad_tol, grad_tol));
  }
}

TEST(NtXent, MatchesPyTorchFixtureDouble) { check_against_fixture(DType::f64, Device::cpu(), 1e-12, 1e-12); }
// f32: the inputs, the similarities and lse are rounded to f32 (2^-24 relative). The non-unit case
// has logits up to 58, which that moves by ~3e-6, and so the probabilities by ~3e-6 relative; dz =
// g W z with g |z| up to ~5 there then moves by ~1e-5 (1.3e-5 measured): 1e-4. The loss: 1e-5 relative.
TEST(NtXent, MatchesPyTorchFixtureFloat) { check_against_fixture(DType::f32, Device::cpu(), 1e-5, 1e-4); }
TEST(NtXent, MatchesPyTorchFixtureCuda) {
  SKIP_WITHOUT_CUDA();
  check_against_fixture(DType::f32, Device::cuda(), 1e-5, 1e-4);
}

// ---- hand-computed values ----

// z = 0: every logit is 0, so each row is uniform over its 2B - 1 + n_h logits, the loss is
// log(2B - 1 + n_h), and every negative ties the positive (all rows top-1). The gradient is then
// only the hard negatives' term: G + G^T multiplies z = 0, so dz_r = g alpha / (2B - 1 + n_h)
// sum_h t_{i(r),h}, with g = 1 / (T 2B).
template <typename T>
void check_all_logits_zero(Device device) {
  const int64_t B = 3, D = 4;
  const double temperature = 0.2, alpha = 1.5;
  for (int64_t n_h : {0, 2}) {
    SCOPED_TRACE("n_h " + std::to_string(n_h));
    Tensor z = Tensor::zeros({2 * B, D}, dtype_of<T>(), device);
    z.requires_grad_(true);
    const Tensor hard = n_h > 0 ? make_input({{B, n_h, D}}, 21, dtype_of<T>(), device) : Tensor();
    const NtXentResult r = nt_xent(z, hard, {temperature, alpha});
    const double logits = static_cast<double>(2 * B - 1 + n_h);
    EXPECT_NEAR(r.loss.item(), std::log(logits), 1e-6 * std::log(logits));
    EXPECT_EQ(top1(r), 2 * B);
    EXPECT_EQ(top5(r), 2 * B);
    r.loss.backward();
    std::vector<double> expected(2 * B * D, 0.0);
    if (n_h > 0) {
      const std::vector<double> t = hard.to_vector<double>();
      const double weight = alpha / (logits * temperature * static_cast<double>(2 * B));
      for (int64_t row = 0; row < 2 * B; ++row)
        for (int64_t h = 0; h < n_h; ++h)
          for (int64_t d = 0; d < D; ++d) expected[row * D + d] += weight * t[((row % B) * n_h + h) * D + d];
    }
    EXPECT_TRUE(all_close(z.grad().to(DType::f64), f64(expected, {2 * B, D}), 1e-7, 1e-6));
  }
}

TEST(NtXent, AllLogitsZeroGiveTheUniformLossDouble) { check_all_logits_zero<double>(Device::cpu()); }
TEST(NtXent, AllLogitsZeroGiveTheUniformLossFloat) { check_all_logits_zero<float>(Device::cpu()); }
TEST(NtXent, AllLogitsZeroGiveTheUniformLossCuda) {
  SKIP_WITHOUT_CUDA();
  check_all_logits_zero<float>(Device::cuda());
}

TEST(NtXent, OneImageWithoutHardNegativesHasZeroLoss) {
  // B = 1: each row's only logit is its positive, so the softmax is 1 there, the loss 0 and the
  // gradient G = P - 1 = 0, whatever z is.
  Tensor z = make_input({{2, 5}}, 22, DType::f64, Device::cpu());
  z.requires_grad_(true);
  const NtXentResult r = nt_xent(z, Tensor(), {0.1, 1.0});
  EXPECT_EQ(r.loss.item(), 0.0);
  EXPECT_EQ(top1(r), 2);
  r.loss.backward();
  EXPECT_TRUE(all_close(z.grad(), Tensor::zeros({2, 5}, DType::f64), 0, 0));
}

// B = 4, D = 4, n_h = 2, alpha = 2. Image i lives on axis e_i: view 1 is z_i = e_i, view 2 is
// z_{i+4} = c_i e_i with c = (0.5, -0.5, 1, 0), and the hard negatives are t_{i,h} = v_{i,h} e_i.
// Every dot product across images is 0, so each row has 6 negatives at 0; the positive is c_i and
// the hard logits (before T) are alpha v_{i,h} (view 1) or alpha c_i v_{i,h} (view 2). All values
// are exact in binary.
//   image  c     v               row i: positive | hards | rank     row i+4: positive | hards | rank
//   0      0.5   (0.25, 0.5)     0.5 | 0.5 tie, 1.0 beats | 1      0.5 | 0.25, 0.5 tie | 0
//   1     -0.5   (-0.5, -0.125)  -0.5 | six 0 beat, -1, -0.25 beats | 7   -0.5 | six 0, 0.5, 0.125 beat | 8
//   2      1     (0.75, 0.625)   1 | 1.5, 1.25 beat | 2            1 | 1.5, 1.25 beat | 2
//   3      0     (-1, 0)         0 | six 0 tie, -2, 0 tie | 0      0 (z = 0) | everything 0, ties | 0
// top-1: rows 3, 4, 7 = 3; top-5: rows 0, 2, 3, 4, 6, 7 = 6.
template <typename T>
void check_accuracy_counts(Device device) {
  const int64_t B = 4, D = 4, n_h = 2;
  const double c[B] = {0.5, -0.5, 1.0, 0.0};
  const double v[B][n_h] = {{0.25, 0.5}, {-0.5, -0.125}, {0.75, 0.625}, {-1.0, 0.0}};
  std::vector<double> z(2 * B * D, 0.0), hard(B * n_h * D, 0.0);
  for (int64_t i = 0; i < B; ++i) {
    z[i * D + i] = 1.0;
    z[(i + B) * D + i] = c[i];
    for (int64_t h = 0; h < n_h; ++h) hard[(i * n_h + h) * D + i] = v[i][h];
  }
  auto make = [&](const std::vector<double>& x, const Shape& s) { return f64(x, s).to(dtype_of<T>()).to(device); };
  const NtXentResult r = nt_xent(make(z, {2 * B, D}), make(hard, {B, n_h, D}), {0.2, 2.0});
  EXPECT_EQ(top1(r), 3);
  EXPECT_EQ(top5(r), 6);
  EXPECT_EQ(r.rows, 2 * B);
}

TEST(NtXent, AccuracyCountsDouble) { check_accuracy_counts<double>(Device::cpu()); }
TEST(NtXent, AccuracyCountsFloat) { check_accuracy_counts<float>(Device::cpu()); }
TEST(NtXent, AccuracyCountsCuda) {
  SKIP_WITHOUT_CUDA();
  check_accuracy_counts<float>(Device::cuda());
}

// ---- the same loss from separate ops, with autograd through each ----

// sum_{j != r} exp(s_rj) through a constant mask (ones off the diagonal), the positive through an
// index_select of the partner rows, the hard logits through an index_select of the image's hard
// negatives; no max is subtracted (the logits here stay small).
Tensor composed_loss(const Tensor& z, const Tensor& hard, double alpha, double temperature) {
  const int64_t n = z.size(0), B = n / 2, D = z.size(1);
  std::vector<double> mask(n * n, 1.0);
  std::vector<int64_t> partner(n), image(n);
  for (int64_t r = 0; r < n; ++r) {
    mask[r * n + r] = 0.0;
    partner[r] = (r + B) % n;
    image[r] = r % B;
  }
  const Tensor off_diagonal = f64(mask, {n, n}).to(z.dtype());
  const Tensor sim = mul_scalar(matmul(z, z, false, true), 1.0 / temperature);
  Tensor sum_exp = sum(mul(exp(sim), off_diagonal), 1);
  const Tensor positive =
      mul_scalar(sum(mul(z, index_select(z, Tensor::from_vector(partner, {n}))), 1), 1.0 / temperature);
  for (int64_t h = 0; h < hard.size(1); ++h) {
    const Tensor t = index_select(hard.slice(1, h, h + 1).reshape({B, D}), Tensor::from_vector(image, {n}));
    sum_exp = add(sum_exp, exp(mul_scalar(sum(mul(z, t), 1), alpha / temperature)));
  }
  return mean(sub(log(sum_exp), positive));
}

void check_against_composed(DType dtype, double tol) {
  const int64_t B = 5, D = 7, n_h = 3;
  const double alpha = 1.7, temperature = 0.3;
  Tensor z = make_input({{2 * B, D}}, 23, dtype, Device::cpu());
  const Tensor hard = make_input({{B, n_h, D}}, 24, dtype, Device::cpu());
  z.requires_grad_(true);
  const Tensor fused = nt_xent(z, hard, {temperature, alpha}).loss;
  fused.backward();
  const Tensor fused_dz = z.grad().clone();
  z.set_grad(Tensor());
  const Tensor composed = composed_loss(z, hard, alpha, temperature);
  composed.backward();
  EXPECT_NEAR(fused.item(), composed.item(), tol * std::fabs(composed.item()));
  EXPECT_TRUE(all_close(fused_dz, z.grad(), tol, tol));
}

TEST(NtXent, MatchesTheComposedOpsDouble) { check_against_composed(DType::f64, 1e-12); }
TEST(NtXent, MatchesTheComposedOpsFloat) { check_against_composed(DType::f32, 1e-5); }

// ---- autograd ----

TEST(NtXent, GradientReachesOnlyZ) {
  Tensor z = make_input({{6, 4}}, 25, DType::f64, Device::cpu());
  Tensor hard = make_input({{3, 2, 4}}, 26, DType::f64, Device::cpu());
  hard.requires_grad_(true);
  EXPECT_FALSE(nt_xent(z, hard).loss.requires_grad()) << "hard is a constant";
  z.requires_grad_(true);
  nt_xent(z, hard).loss.backward();
  EXPECT_TRUE(z.grad().defined());
  EXPECT_FALSE(hard.grad().defined());
}

TEST(NtXent, RetainedGraphGivesTheSameGradientTwice) {
  // The first backward turns the saved similarities into gradient weights in place; the second
  // must recompute them, not reuse the weights.
  Tensor z = make_input({{8, 5}}, 27, DType::f64, Device::cpu());
  z.requires_grad_(true);
  const Tensor loss = nt_xent(z, make_input({{4, 1, 5}}, 28, DType::f64, Device::cpu()), {0.2, 2.0}).loss;
  loss.backward(Tensor(), true);
  const Tensor once = z.grad().clone();
  loss.backward();
  EXPECT_TRUE(all_close(z.grad(), mul_scalar(once, 2.0), 1e-14, 1e-14));
}

// ---- CUDA against the CPU at SimCLR's sizes ----

// View 2 is view 1 plus noise, and the hard negatives are view 1 plus more noise, so that the
// positive wins some rows and not others and lands within the top 5 in some of the others: both
// counts are then strictly between 0 and 2B, and a wrong count shows. At D = 128 the best of the
// 2B - 2 other rows has a cosine of about 0.3 with a row, the fifth best about 0.2. The first half
// of the images: z2 = normalize(z1 + 0.4 u), cos(z1, z2) about 0.93, and the hard negatives
// t = normalize(z1 + 2 u') have cos about 0.45 +- 0.08, so with alpha = 2 they rival the positive.
// The second half: z2 = normalize(z1 + 3 u), cos about 0.32 +- 0.08, among the best few random rows.
void check_cuda_matches_cpu(int64_t B) {
  const int64_t D = 128, n_h = 2;
  auto unit_rows = [](Shape shape, uint64_t seed, Device device) {
    const int64_t dim = shape.back();
    return l2_normalize(make_input({{shape_numel(shape) / dim, dim}}, seed, DType::f32, device)).reshape(shape);
  };
  NtXentResult results[2];
  Tensor grads[2];
  const Device devices[2] = {Device::cpu(), Device::cuda()};
  for (int d = 0; d < 2; ++d) {
    const Tensor z1 = unit_rows({B, D}, 31, devices[d]);
    const Tensor u = unit_rows({B, D}, 32, devices[d]);
    Tensor hard = Tensor::empty({B, n_h, D}, DType::f32, devices[d]);
    for (int64_t h = 0; h < n_h; ++h)
      hard.slice(1, h, h + 1)
          .copy_(l2_normalize(add(z1, mul_scalar(unit_rows({B, D}, 33 + h, devices[d]), 2.0))).reshape({B, 1, D}));
    Tensor z = Tensor::empty({2 * B, D}, DType::f32, devices[d]);
    z.slice(0, 0, B).copy_(z1);
    for (auto [from, to, noise] : {std::tuple{int64_t{0}, B / 2, 0.4}, std::tuple{B / 2, B, 3.0}})
      z.slice(0, B + from, B + to)
          .copy_(l2_normalize(add(z1.slice(0, from, to), mul_scalar(u.slice(0, from, to), noise))));
    z.requires_grad_(true);
    results[d] = nt_xent(z, hard, {0.2, 2.0});
    results[d].loss.backward();
    grads[d] = z.grad();
  }
  // f32 on both sides, the dot products summed in other orders and expf against exp: the loss
  // (about 3.5) to 1e-5; dz (entries up to ~4e-3) to 1e-6 + 1e-4 relative.
  EXPECT_NEAR(results[1].loss.item(), results[0].loss.item(), 1e-5);
  EXPECT_EQ(top1(results[1]), top1(results[0]));
  EXPECT_EQ(top5(results[1]), top5(results[0]));
  EXPECT_GT(top1(results[0]), 0) << "the inputs should let the positive win some rows";
  EXPECT_LT(top5(results[0]), 2 * B) << "the inputs should leave the positive out of the top 5 in some rows";
  EXPECT_LT(top1(results[0]), top5(results[0])) << "the inputs should put the positive 2nd to 5th in some rows";
  EXPECT_TRUE(all_close(grads[1], grads[0], 1e-6, 1e-4));
}

// The small twin of the real-size case: runs in the emulator too.
TEST(NtXent, CudaMatchesCpuAt2B128) {
  SKIP_WITHOUT_CUDA();
  check_cuda_matches_cpu(64);
}

// SimCLR's training shape: 2B = 512 rows of D = 128, two hard negatives per image.
TEST(NtXent, CudaRealSizeMatchesCpuAt2B512) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  check_cuda_matches_cpu(256);
}

// ---- refusals ----

TEST(NtXent, RefusalsNameTheProblem) {
  std::string msg = error_of([] { nt_xent(Tensor::zeros({5, 4}), Tensor()); });
  EXPECT_NE(msg.find("even number of rows"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(5, 4)"), std::string::npos) << msg;

  msg = error_of([] { nt_xent(Tensor::zeros({8}), Tensor()); });
  EXPECT_NE(msg.find("(2B, D)"), std::string::npos) << msg;

  msg = error_of([] { nt_xent(Tensor::zeros({0, 4}), Tensor()); });
  EXPECT_NE(msg.find("at least one image"), std::string::npos) << msg;

  const Tensor z = Tensor::zeros({6, 4});
  for (const Shape& bad : {Shape{3, 2, 5}, Shape{6, 1, 4}, Shape{3, 4}}) {
    msg = error_of([&] { nt_xent(z, Tensor::zeros(bad)); });
    EXPECT_NE(msg.find(shape_str(bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3, n_h, 4)"), std::string::npos) << msg;
  }

  msg = error_of([&] { nt_xent(z, Tensor::zeros({3, 2, 4}, DType::f64)); });
  EXPECT_NE(msg.find("one dtype"), std::string::npos) << msg;

  msg = error_of([&] { nt_xent(z, Tensor(), {0.0, 1.0}); });
  EXPECT_NE(msg.find("temperature"), std::string::npos) << msg;
  msg = error_of([&] { nt_xent(z, Tensor(), {0.2, std::nan("")}); });
  EXPECT_NE(msg.find("alpha must be finite"), std::string::npos) << msg;
}

TEST(NtXent, CudaRefusesMixedDevicesAndDoubles) {
  SKIP_WITHOUT_CUDA();
  const Tensor z = Tensor::zeros({6, 4}, DType::f32, Device::cuda());
  std::string msg = error_of([&] { nt_xent(z, Tensor::zeros({3, 2, 4})); });
  EXPECT_NE(msg.find("one device"), std::string::npos) << msg;
  msg = error_of([] { nt_xent(Tensor::zeros({6, 4}, DType::f64, Device::cuda()), Tensor()); });
  EXPECT_NE(msg.find("computes in f32"), std::string::npos) << msg;
}

}  // namespace
}  // namespace engine::testing
