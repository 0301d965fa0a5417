// test_moco.cpp - the MoCo model's steps: the initial loss, the queue, the momentum update, shuffle
// BN, the hard negatives of both O7 behaviours, and which parameters receive gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "layers/layers.h"
#include "layers/optimizer.h"
#include "ops/l2_normalize.h"
#include "ssl/methods/moco.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

using testing::all_close;

// ResNet-18 with the small stem on 16-pixel images: a real encoder, fast on the CPU.
MocoConfig tiny_config() {
  MocoConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.dim = 8;
  c.queue_size = 32;
  c.temperature = 0.2;
  c.bn_groups = 2;
  return c;
}

double sum_of_squares(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector<double>()) s += v * v;
  return s;
}

Tensor images(int64_t n, uint64_t seed, int64_t side = 16) {
  return testing::make_input({{n, 3, side, side}}, seed, DType::f32, Device::cpu());
}

TEST(MoCo, StartsWithTheKeyEncoderEqualToTheQueryEncoderAndAUnitQueue) {
  MoCo moco(tiny_config(), 1, Device::cpu());
  EXPECT_TRUE(all_close(moco.encoder_k().flat_parameters(), moco.encoder_q().flat_parameters(), 0, 0));
  EXPECT_EQ(moco.queue().shape(), (Shape{8, 32}));
  EXPECT_EQ(moco.queue_ptr(), 0);
  const std::vector<float> q = moco.queue().to_vector<float>();
  for (int64_t j = 0; j < 32; ++j) {
    double norm = 0;
    for (int64_t d = 0; d < 8; ++d) norm += static_cast<double>(q[d * 32 + j]) * q[d * 32 + j];
    EXPECT_NEAR(norm, 1.0, 1e-5) << "column " << j;
  }
  // The MLP head is named as the reference's: fc.0 and fc.2.
  MocoConfig mlp = tiny_config();
  mlp.mlp = true;
  MoCo with_mlp(mlp, 1, Device::cpu());
  bool found = false;
  for (const auto& [name, t] : with_mlp.state_dict()) found |= name == "encoder_q.fc.2.weight" && t.shape() == Shape{8, 512};
  EXPECT_TRUE(found);
}

TEST(MoCo, InitialLossIsLogOfTheLogitCountWhenTheTemperatureIsLarge) {
  // With T large every logit is ~0, so the loss is ln(1 + K + n_h) whatever the model.
  MocoConfig c = tiny_config();
  c.temperature = 1e4;
  MoCo moco(c, 2, Device::cpu());
  ShuffleStream shuffle{Generator(3), Tensor()};
  const ContrastiveOutput plain = moco.forward(images(8, 10), images(8, 11), Tensor(), shuffle);
  EXPECT_NEAR(plain.loss.item(), std::log(1.0 + 32), 1e-3);
  EXPECT_EQ(plain.rows, 8);
  const Tensor hard = images(16, 12).view({8, 2, 3, 16, 16});
  const ContrastiveOutput with_hard = moco.forward(images(8, 10), images(8, 11), hard, shuffle);
  EXPECT_NEAR(with_hard.loss.item(), std::log(1.0 + 32 + 2), 1e-3);
}

TEST(MoCo, EnqueueWritesTheKeysAsColumnsAndWrapsThePointer) {
  MoCo moco(tiny_config(), 4, Device::cpu());
  const Tensor before = moco.queue().clone();
  std::vector<Tensor> keys;
  for (int i = 0; i < 5; ++i) keys.push_back(l2_normalize(testing::make_input({{8, 8}}, 20 + i, DType::f32, Device::cpu())));
  // K = 32, N = 8: the pointer goes 0, 8, 16, 24, 0, 8.
  const int64_t expected_ptr[] = {8, 16, 24, 0, 8};
  for (int i = 0; i < 5; ++i) {
    moco.dequeue_and_enqueue(keys[i]);
    EXPECT_EQ(moco.queue_ptr(), expected_ptr[i]);
  }
  // By hand: columns 0-7 hold the fifth batch, 8-15 the second, 16-23 the third, 24-31 the fourth.
  const int source[] = {4, 1, 2, 3};
  for (int block = 0; block < 4; ++block) {
    const Tensor columns = moco.queue().slice(1, 8 * block, 8 * block + 8);  // (D, 8)
    EXPECT_TRUE(all_close(columns, keys[source[block]].transpose(0, 1), 0, 0)) << "block " << block;
  }
  EXPECT_FALSE(all_close(moco.queue(), before, 1e-3, 0));
  EXPECT_THROW(moco.dequeue_and_enqueue(keys[0].slice(0, 0, 5)), Error);  // 5 does not divide 32
}

TEST(MoCo, ForwardUsesThePreviousQueueThenEnqueuesItsKeys) {
  MoCo moco(tiny_config(), 5, Device::cpu());
  const Tensor before = moco.queue().clone();
  ShuffleStream shuffle{Generator(6), Tensor()};
  moco.forward(images(8, 30), images(8, 31), Tensor(), shuffle);
  EXPECT_EQ(moco.queue_ptr(), 8);
  // Columns 8-31 untouched, 0-7 replaced by unit keys.
  EXPECT_TRUE(all_close(moco.queue().slice(1, 8, 32), before.slice(1, 8, 32), 0, 0));
  EXPECT_FALSE(all_close(moco.queue().slice(1, 0, 8), before.slice(1, 0, 8), 1e-3, 0));
}

TEST(MoCo, OnlyTheQueryEncoderReceivesGradientsAndTheKeyEncoderFollowsByMomentum) {
  MocoConfig c = tiny_config();
  c.momentum = 0.9;
  MoCo moco(c, 7, Device::cpu());
  nn::Sgd sgd(moco.encoder_q(), {});
  ShuffleStream shuffle{Generator(8), Tensor()};
  for (int step = 0; step < 2; ++step) {
    const Tensor q_before = moco.encoder_q().flat_parameters().clone();
    const Tensor k_before = moco.encoder_k().flat_parameters().clone();
    ContrastiveOutput out = moco.forward(images(8, 40 + step), images(8, 50 + step), Tensor(), shuffle);
    // theta_k = m theta_k + (1 - m) theta_q, with theta_q before this step's update.
    Tensor expected = k_before.clone();
    const std::vector<float> q = q_before.to_vector<float>(), k = k_before.to_vector<float>();
    std::vector<float> e(q.size());
    for (size_t i = 0; i < q.size(); ++i) e[i] = k[i] * 0.9f + q[i] * (1.0f - 0.9f);
    EXPECT_TRUE(all_close(moco.encoder_k().flat_parameters(), Tensor::from_vector(e, expected.shape()), 1e-7, 1e-6));
    moco.encoder_q().zero_grad();
    out.loss.backward();
    EXPECT_GT(sum_of_squares(moco.encoder_q().flat_gradients()), 0.0);
    for (const Tensor& p : moco.encoder_k().parameters()) EXPECT_FALSE(p.grad().defined() && sum_of_squares(p.grad()) > 0);
    sgd.step(0.1);
    EXPECT_FALSE(all_close(moco.encoder_q().flat_parameters(), q_before, 1e-6, 0)) << "the step moved f_q";
  }
}

TEST(MoCo, ShuffleBnEncodesEachKeyInTheGroupItWasShuffledInto) {
  MoCo moco(tiny_config(), 9, Device::cpu());
  const Tensor x = images(8, 60);
  ShuffleStream shuffle{Generator(11, 3), Tensor()};
  Generator replay(11, 3);
  const Tensor keys = moco.encode_keys(x, shuffle);  // (8, D)
  // Replay the permutation; encode each group of 4 shuffled images by itself.
  const std::vector<int64_t> perm = randperm(8, replay).to_vector<int64_t>();
  nn::set_ghost_batchnorm(moco.encoder_k(), 1, GhostRunningStats::FirstGroup);
  NoGradGuard no_grad;
  for (int64_t g = 0; g < 2; ++g) {
    Tensor group = Tensor::empty({4, 3, 16, 16});
    for (int64_t j = 0; j < 4; ++j) group.slice(0, j, j + 1).copy_(x.slice(0, perm[g * 4 + j], perm[g * 4 + j] + 1));
    const Tensor k = l2_normalize(moco.encoder_k().forward(group));
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_TRUE(all_close(keys.slice(0, perm[g * 4 + j], perm[g * 4 + j] + 1), k.slice(0, j, j + 1), 1e-5, 1e-4))
          << "image " << perm[g * 4 + j];
  }
}

TEST(MoCo, ReferenceQuirksShareOneHardNegativePerGroupEncodedAlone) {
  MocoConfig c = tiny_config();
  c.reference_quirks = true;
  MoCo moco(c, 12, Device::cpu());
  const Tensor hard = images(8, 70).view({8, 1, 3, 16, 16});
  ShuffleStream shuffle{Generator(13), Tensor()};
  const Tensor t = moco.encode_hard_negatives(hard, shuffle);  // (8, 1, D)
  ASSERT_EQ(t.shape(), (Shape{8, 1, 8}));
  nn::set_ghost_batchnorm(moco.encoder_k(), 1, GhostRunningStats::FirstGroup);
  NoGradGuard no_grad;
  for (int64_t g = 0; g < 2; ++g) {
    // Image 0 of group g, alone: BatchNorm over one image.
    const Tensor alone = l2_normalize(moco.encoder_k().forward(hard.view({8, 3, 16, 16}).slice(0, 4 * g, 4 * g + 1)));
    for (int64_t i = 4 * g; i < 4 * g + 4; ++i)
      EXPECT_TRUE(all_close(t.slice(0, i, i + 1).view({1, 8}), alone, 1e-5, 1e-4)) << "query " << i;
  }
}

TEST(MoCo, CleanHardNegativesAreEachImagesOwn) {
  MoCo moco(tiny_config(), 14, Device::cpu());
  const Tensor hard = images(8, 80).view({8, 1, 3, 16, 16});
  ShuffleStream shuffle{Generator(15), Tensor()};
  const Tensor t = moco.encode_hard_negatives(hard, shuffle);
  // Rows differ from image to image (their own views), unlike the quirk's shared vector.
  EXPECT_FALSE(all_close(t.slice(0, 0, 1), t.slice(0, 1, 2), 1e-3, 0));
  EXPECT_EQ(t.shape(), (Shape{8, 1, 8}));
}

TEST(MoCo, StateRoundTripsAndRefusesAnotherShape) {
  MoCo a(tiny_config(), 16, Device::cpu()), b(tiny_config(), 17, Device::cpu());
  ShuffleStream shuffle{Generator(18), Tensor()};
  a.forward(images(8, 90), images(8, 91), Tensor(), shuffle);
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(all_close(b.encoder_q().flat_parameters(), a.encoder_q().flat_parameters(), 0, 0));
  EXPECT_TRUE(all_close(b.encoder_k().flat_parameters(), a.encoder_k().flat_parameters(), 0, 0));
  EXPECT_TRUE(all_close(b.queue(), a.queue(), 0, 0));
  EXPECT_EQ(b.queue_ptr(), 8);
  MocoConfig other = tiny_config();
  other.queue_size = 64;
  MoCo c(other, 19, Device::cpu());
  EXPECT_THROW(c.load_state_dict(a.state_dict()), Error);
}

// One MoCo step on CUDA and on the CPU from the same weights, views and shuffle: plain, or with
// hp masking (saliency from the key encoder) and one hard negative per image. The loss and the
// queue agree to f32 rounding; the gradient is compared as a whole, not element by element: f32
// on both sides, summed in different orders, puts the two forwards about 1e-6 apart, and a ReLU
// input that close to zero takes the other side on the other device (at the tiny size, for about
// 2 seeds in 5). Its gradient then changes everything before it, by up to 1% of the whole:
// measured 4e-6 relative (L2) without such a flip, 2e-3 to 6e-3 with one. A wrong shuffle, mask,
// queue or loss gradient is off by far more. The masks themselves are drawn from the same Philox
// words on both devices, and the foreground cells from maps this close agree except at a tie.
void check_cuda_step_matches_cpu(const MocoConfig& config, int64_t n, int64_t side, bool masked) {
  MoCo cpu(config, 20, Device::cpu()), gpu(config, 20, Device::cuda());
  const Tensor q = images(n, 100, side), k = images(n, 101, side);
  ShuffleStream s1{Generator(21), Tensor()}, s2{Generator(21), Tensor()};
  ContrastiveOutput a, b;
  if (masked) {
    MaskingConfig mc;
    mc.strategy = MaskStrategy::Hp;
    mc.num_nonsem = 1;
    mc.bn_groups = config.bn_groups;
    mc.seed = 5;
    const SaliencyGuidedMasking on_cpu(mc, Device::cpu()), on_gpu(mc, Device::cuda());
    a = cpu.forward_masked(q, k, on_cpu, 3, s1);
    b = gpu.forward_masked(q.to(Device::cuda()), k.to(Device::cuda()), on_gpu, 3, s2);
  } else {
    a = cpu.forward(q, k, Tensor(), s1);
    b = gpu.forward(q.to(Device::cuda()), k.to(Device::cuda()), Tensor(), s2);
  }
  EXPECT_NEAR(b.loss.item(), a.loss.item(), 1e-4 * std::max(1.0, std::fabs(a.loss.item())));
  EXPECT_TRUE(all_close(gpu.queue(), cpu.queue(), 1e-5, 1e-4));
  EXPECT_EQ(b.correct.to_vector<int64_t>(), a.correct.to_vector<int64_t>());
  a.loss.backward();
  b.loss.backward();
  const std::vector<float> g = gpu.encoder_q().flat_gradients().to_vector<float>();
  const std::vector<float> c = cpu.encoder_q().flat_gradients().to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    diff += (static_cast<double>(g[i]) - c[i]) * (static_cast<double>(g[i]) - c[i]);
    norm += static_cast<double>(c[i]) * c[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-2) << "relative L2 distance of the gradients";
  EXPECT_GT(norm, 1e-8) << "the gradient should not vanish";
}

TEST(MoCo, CudaLossAndGradientsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  check_cuda_step_matches_cpu(tiny_config(), 8, 16, false);
}

TEST(MoCo, CudaMaskedStepWithHardNegativesMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  check_cuda_step_matches_cpu(tiny_config(), 8, 16, true);
}

// The training step's network and views: ResNet-50 with the MLP head, 224 pixels, the reference's
// queue, 4 virtual GPUs (batch 8 here, so that the CPU side takes seconds, not minutes).
MocoConfig real_size_config() {
  MocoConfig c;
  c.arch = "resnet50";
  c.mlp = true;
  c.temperature = 0.2;
  c.bn_groups = 4;
  return c;
}

TEST(MoCo, CudaRealSizeStepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  check_cuda_step_matches_cpu(real_size_config(), 8, 224, false);
}

TEST(MoCo, CudaRealSizeMaskedStepMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  check_cuda_step_matches_cpu(real_size_config(), 8, 224, true);
}

}  // namespace
}  // namespace engine::ssl
