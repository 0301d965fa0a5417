// test_autograd.cpp - the autograd engine: a small MLP against finite differences, gradient
// accumulation over several paths and several backwards, grad-ready hooks, NoGradGuard, views in
// the graph, and the errors for walking a freed graph or a non-scalar without a seed.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// A two-layer perceptron with a mean-squared loss: (x W1 + b1) -> relu -> (. W2 + b2), MSE vs y.
Tensor mlp_loss(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                const Tensor& y) {
  const Tensor hidden = relu(matmul(x, w1) + b1);  // (N, H)
  const Tensor pred = matmul(hidden, w2) + b2;     // (N, O)
  const Tensor err = pred - y;
  return mean(err * err);
}

TEST(Autograd, SmallMlpMatchesFiniteDifferences) {
  const DType f64 = DType::f64;
  std::vector<Tensor> inputs = {
      make_input({{5, 4}}, 1, f64, Device::cpu()),                             // x (N, D)
      make_input({{4, 6}}, 2, f64, Device::cpu()),                             // W1 (D, H)
      make_input({{6}, -0.1, 0.1}, 3, f64, Device::cpu()),                     // b1 (H)
      make_input({{6, 3}, -1.0, 1.0, Layout::Transposed}, 4, f64, Device::cpu()),  // W2 (H, O), a view
      make_input({{3}}, 5, f64, Device::cpu()),                                // b2 (O)
  };
  const Tensor y = make_input({{5, 3}}, 6, f64, Device::cpu());
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& p) { return mlp_loss(p[0], p[1], p[2], p[3], p[4], y); }, inputs, 1e-6, 1e-6));
}

TEST(Autograd, GradientsSumOverPathsAndAccumulateOverBackwards) {
  Tensor x = Tensor::from_vector<double>({1.0, 2.0, 3.0}, {3}).requires_grad_();
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1: x reaches y along two paths
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3.0, 5.0, 7.0}));
  sum(x * 2.0).backward();  // a second backward adds to the leaf's gradient
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5.0, 7.0, 9.0}));
  x.set_grad(Tensor());
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1.0, 1.0, 1.0}));
}

TEST(Autograd, LeafGradientSetToAViewOfAFlatBufferIsAccumulatedInPlace) {
  Tensor flat_grad = Tensor::zeros({5}, DType::f64);  // as a model's flat gradient buffer
  Tensor x = Tensor::from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
  x.set_grad(flat_grad.slice(0, 1, 3));
  sum(x * 3.0).backward();
  sum(x * x).backward();
  EXPECT_EQ(flat_grad.to_vector<double>(), (std::vector<double>{0.0, 5.0, 7.0, 0.0, 0.0}));
  EXPECT_EQ(x.grad().data_ptr(), flat_grad.slice(0, 1, 3).data_ptr()) << "the gradient stays the buffer's view";
}

TEST(Autograd, GradientFlowsThroughViews) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).requires_grad_();
  // y = sum over the transposed middle column, doubled, plus everything reshaped
  Tensor y = sum(x.transpose(0, 1).slice(0, 1, 2) * 2.0) + sum(x.reshape({6}).to(DType::f32).to(DType::f64));
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 3, 1, 1, 3, 1}));
}

TEST(Autograd, GradReadyHookFiresOnceWithTheFinalGradient) {
  Tensor w = Tensor::from_vector<double>({2.0, -1.0}, {2}).requires_grad_();
  std::vector<std::vector<double>> seen;
  w.register_grad_ready_hook([&](const Tensor& g) { seen.push_back(g.to_vector<double>()); });
  Tensor loss = sum(w * w) + sum(w * 3.0);  // two paths into w: the hook waits for both
  loss.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<double>{7.0, 1.0}));
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = Tensor::ones({3}).requires_grad_();
  {
    NoGradGuard guard;
    EXPECT_FALSE(GradMode::enabled());
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_THROW(y.backward(), Error);
  }
  EXPECT_TRUE(GradMode::enabled());
  EXPECT_TRUE((x * 2.0).requires_grad());
  EXPECT_FALSE((x * 2.0).detach().requires_grad());
}

TEST(Autograd, OnlyInputsThatRequireGradReceiveOne) {
  Tensor a = Tensor::from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
  Tensor b = Tensor::from_vector<double>({3.0, 4.0}, {2});
  sum(a * b).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{3.0, 4.0}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(Autograd, SecondBackwardThroughFreedContextIsAnError) {
  Tensor x = Tensor::from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "the saved context is gone";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
  Tensor z = sum(exp(x));
  z.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_NO_THROW(z.backward());
}

TEST(Autograd, NonScalarNeedsASeed) {
  Tensor x = Tensor::ones({2, 2}).requires_grad_();
  Tensor y = x * 3.0;
  try {
    y.backward();
    FAIL() << "a non-scalar output needs a seed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  EXPECT_THROW(y.backward(Tensor::ones({3})), Error) << "a seed of the wrong shape";
  y.backward(Tensor::full({2, 2}, 0.5));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1.5f, 1.5f, 1.5f, 1.5f}));
}

TEST(Autograd, InPlaceOnATensorThatRequiresGradIsRefused) {
  Tensor w = Tensor::ones({3}).requires_grad_();
  EXPECT_THROW(w.fill_(0.0), Error);
  EXPECT_THROW(add_(w, Tensor::ones({3})), Error);
  NoGradGuard guard;  // as an optimizer step does
  add_(w, Tensor::ones({3}));
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

TEST(Autograd, RequiresGradOnlyOnFloatingLeaves) {
  EXPECT_THROW(Tensor::zeros({2}, DType::i64).requires_grad_(), Error);
  Tensor x = Tensor::ones({2}).requires_grad_();
  Tensor y = x * 2.0;
  EXPECT_FALSE(y.is_leaf());
  EXPECT_THROW(y.requires_grad_(), Error);
}

TEST(Autograd, TrainingTheMlpReducesItsLoss) {
  // Plain gradient descent on a fixed regression problem, written with the engine's ops only.
  const Device cpu = Device::cpu();
  Tensor x = make_input({{32, 4}}, 1, DType::f32, cpu);
  Tensor y = make_input({{32, 2}}, 2, DType::f32, cpu);
  std::vector<Tensor> params = {make_input({{4, 16}}, 3, DType::f32, cpu), Tensor::zeros({16}),
                                make_input({{16, 2}, -0.3, 0.3}, 4, DType::f32, cpu), Tensor::zeros({2})};
  for (Tensor& p : params) p.requires_grad_();
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    Tensor loss = mlp_loss(x, params[0], params[1], params[2], params[3], y);
    (step == 0 ? first : last) = loss.item();
    for (Tensor& p : params) p.set_grad(Tensor());
    loss.backward();
    NoGradGuard guard;
    for (Tensor& p : params) add_(p, p.grad() * -0.1);
  }
  EXPECT_LT(last, 0.5 * first) << "first loss " << first << ", last " << last;
}

TEST(Autograd, CudaBackwardMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  auto grads_on = [](Device device) {
    std::vector<Tensor> p = {make_input({{8, 5}}, 1, DType::f32, device), make_input({{5, 7}}, 2, DType::f32, device),
                             make_input({{7}}, 3, DType::f32, device), make_input({{7, 3}}, 4, DType::f32, device),
                             make_input({{3}}, 5, DType::f32, device)};
    for (Tensor& t : p) t.requires_grad_();
    mlp_loss(p[0], p[1], p[2], p[3], p[4], make_input({{8, 3}}, 6, DType::f32, device)).backward();
    return p;
  };
  const std::vector<Tensor> cpu = grads_on(Device::cpu()), gpu = grads_on(Device::cuda());
  for (size_t k = 0; k < cpu.size(); ++k) EXPECT_TRUE(all_close(gpu[k].grad(), cpu[k].grad(), 1e-5, 1e-4)) << k;
}

}  // namespace
}  // namespace engine::testing
