// test_masking.cpp - the masking around a MoCo step (ssl/masking/masking.h): the encoder inputs of each
// strategy, the saliency sources (the key forward's own map, a pretrained localizer from
// torchvision-named or checkpoint files, none), the hard negatives as masked copies of the key
// input, and the masked forward equal to its steps run by hand.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/serialize.h"
#include "layers/layers.h"
#include "ops/gaussian_filter.h"
#include "ssl/methods/moco.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

using testing::all_close;
using testing::TempDir;

// ResNet-18 with the small stem on 32-pixel images: a 4 x 4 grid, fast on the CPU.
MocoConfig small_config() {
  MocoConfig c;
  c.arch = "resnet18";
  c.small_stem = true;
  c.dim = 8;
  c.queue_size = 32;
  c.temperature = 0.2;
  c.bn_groups = 2;
  c.alpha = 2.0;
  return c;
}

MaskingConfig masking_config(MaskStrategy strategy, int64_t num_nonsem,
                             SaliencySourceKind source = SaliencySourceKind::Momentum) {
  MaskingConfig m;
  m.strategy = strategy;
  m.saliency.kind = source;
  m.num_nonsem = num_nonsem;
  m.bn_groups = 2;
  m.seed = 3;
  return m;
}

Tensor views(int64_t n, uint64_t seed, int64_t side = 32) {
  return testing::make_input({{n, 3, side, side}}, seed, DType::f32, Device::cpu());
}

TEST(Masking, ParsesStrategiesAndSourcesAndRefusesOthers) {
  EXPECT_EQ(parse_mask_strategy("hp"), MaskStrategy::Hp);
  EXPECT_EQ(parse_mask_strategy("mean"), MaskStrategy::Mean);
  EXPECT_THROW(parse_mask_strategy("noise"), Error);
  EXPECT_EQ(parse_saliency_source("momentum").kind, SaliencySourceKind::Momentum);
  EXPECT_EQ(parse_saliency_source("none").kind, SaliencySourceKind::None);
  const SaliencySource p = parse_saliency_source("pretrained:/x/resnet50.safetensors");
  EXPECT_EQ(p.kind, SaliencySourceKind::Pretrained);
  EXPECT_EQ(p.file, "/x/resnet50.safetensors");
  EXPECT_THROW(parse_saliency_source("pretrained:"), Error);
  EXPECT_THROW(parse_saliency_source("supervised"), Error);
  // Hard negatives need a masking strategy.
  EXPECT_THROW(SaliencyGuidedMasking(masking_config(MaskStrategy::None, 1), Device::cpu()), Error);
}

TEST(Masking, HpHighPassesEveryEncoderInputAndTheOthersPassTheViewThrough) {
  const Tensor v = views(2, 1);
  const SaliencyGuidedMasking hp(masking_config(MaskStrategy::Hp, 0), Device::cpu());
  EXPECT_TRUE(all_close(hp.encoder_input(v), high_pass(v, 11, 5.0), 0, 0));
  const SaliencyGuidedMasking blur(masking_config(MaskStrategy::Blur, 0), Device::cpu());
  EXPECT_TRUE(all_close(blur.encoder_input(v), v, 0, 0));
}

TEST(Masking, TheKeyForwardHandsOverEachImagesLayer4MapInTheImagesOrder) {
  // With one BatchNorm group the statistics do not depend on the order, so the map the shuffled
  // key forward hands back must be the plain forward's, image by image.
  MocoConfig c = small_config();
  c.bn_groups = 1;
  MoCo moco(c, 4, Device::cpu());
  const Tensor k = views(6, 2);
  ShuffleStream shuffle{Generator(9), Tensor()};
  Tensor saliency;
  moco.encode_keys(k, shuffle, &saliency);
  NoGradGuard no_grad;
  const Tensor expected = saliency_maps(moco.encoder_k().feature_map(k));
  ASSERT_EQ(saliency.shape(), (Shape{6, 4, 4}));
  EXPECT_TRUE(all_close(saliency, expected, 1e-4, 1e-4));
}

TEST(Masking, HardNegativesAreNegModeCopiesOfTheKeyInputOnForegroundCells) {
  MoCo moco(small_config(), 5, Device::cpu());
  for (MaskStrategy strategy : {MaskStrategy::Hp, MaskStrategy::Blur, MaskStrategy::Mean}) {
    const SaliencyGuidedMasking masking(masking_config(strategy, 2), Device::cpu());
    const Tensor q = views(8, 10), k = views(8, 11);
    const Tensor qi = masking.encoder_input(q), ki = masking.encoder_input(k);
    const MaskedBatch b = masking.mask(q, k, qi, ki, Tensor(), moco.encoder_k(), 7);
    ASSERT_EQ(b.hard_negative.shape(), (Shape{8, 2, 3, 32, 32}));
    ASSERT_EQ(b.mask_hard_negative.shape(), (Shape{8, 2, 3, 4, 4}));
    ASSERT_EQ(b.fg_key.shape(), (Shape{8, 4, 4}));
    const std::vector<float> hard = b.hard_negative.to_vector<float>(), key = ki.to_vector<float>();
    const std::vector<uint8_t> cells = b.mask_hard_negative.to_vector<uint8_t>(), fg = b.fg_key.to_vector<uint8_t>(),
                               focal = b.focal_hard_negative.to_vector<uint8_t>();
    int64_t masked_cells = 0;
    for (int64_t n = 0; n < 8; ++n)
      for (int64_t j = 0; j < 2; ++j) {
        if (focal[static_cast<size_t>(n * 2 + j)]) continue;
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t y = 0; y < 32; ++y)
            for (int64_t x = 0; x < 32; ++x) {
              const int64_t cell = (y / 8) * 4 + x / 8;
              const bool masked = cells[static_cast<size_t>(((n * 2 + j) * 3 + c) * 16 + cell)];
              if (masked) {
                EXPECT_TRUE(fg[static_cast<size_t>(n * 16 + cell)]) << "neg mode masks foreground only";
                continue;
              }
              ASSERT_EQ(hard[static_cast<size_t>((((n * 2 + j) * 3 + c) * 32 + y) * 32 + x)],
                        key[static_cast<size_t>(((n * 3 + c) * 32 + y) * 32 + x)]);
            }
        for (int64_t i = 0; i < 48; ++i) masked_cells += cells[static_cast<size_t>((n * 2 + j) * 48 + i)];
      }
    EXPECT_GT(masked_cells, 0) << mask_strategy_name(strategy);
    // The two hard negatives of an image draw their own masks.
    EXPECT_NE(std::vector<uint8_t>(cells.begin(), cells.begin() + 48),
              std::vector<uint8_t>(cells.begin() + 48, cells.begin() + 96));
    // The key input itself is never masked.
    EXPECT_TRUE(all_close(b.key, ki, 0, 0));
  }
}

TEST(Masking, NoSaliencyMakesEveryCellForeground) {
  MoCo moco(small_config(), 6, Device::cpu());
  const SaliencyGuidedMasking masking(masking_config(MaskStrategy::Mean, 1, SaliencySourceKind::None), Device::cpu());
  const Tensor q = views(4, 12), k = views(4, 13);
  const MaskedBatch b = masking.mask(q, k, q, k, Tensor(), moco.encoder_k(), 0);
  EXPECT_FALSE(b.saliency_query.defined());
  ASSERT_EQ(b.fg_query.shape(), (Shape{4, 4, 4}));  // the encoder's grid at 32 px
  for (uint8_t v : b.fg_query.to_vector<uint8_t>()) EXPECT_EQ(v, 1);
}

TEST(Masking, TheSameStepMasksAlikeAndAnotherStepDifferently) {
  MoCo moco(small_config(), 7, Device::cpu());
  const SaliencyGuidedMasking masking(masking_config(MaskStrategy::Hp, 1), Device::cpu());
  const Tensor q = views(8, 14), k = views(8, 15);
  const Tensor qi = masking.encoder_input(q), ki = masking.encoder_input(k);
  const MaskedBatch a = masking.mask(q, k, qi, ki, Tensor(), moco.encoder_k(), 3);
  const MaskedBatch b = masking.mask(q, k, qi, ki, Tensor(), moco.encoder_k(), 3);
  const MaskedBatch c = masking.mask(q, k, qi, ki, Tensor(), moco.encoder_k(), 4);
  EXPECT_TRUE(all_close(a.query, b.query, 0, 0));
  EXPECT_TRUE(all_close(a.hard_negative, b.hard_negative, 0, 0));
  EXPECT_FALSE(all_close(a.query, c.query, 0, 0));
}

TEST(Masking, MaskedForwardIsItsStepsInOrder) {
  // Two identical models: one runs forward_masked, the other the steps by hand.
  MoCo a(small_config(), 8, Device::cpu()), b(small_config(), 8, Device::cpu());
  const SaliencyGuidedMasking masking(masking_config(MaskStrategy::Hp, 1), Device::cpu());
  const Tensor q = views(8, 16), k = views(8, 17);
  ShuffleStream shuffle_a{Generator(30), Tensor()}, shuffle_b{Generator(30), Tensor()};
  MaskedBatch record;
  const ContrastiveOutput out = a.forward_masked(q, k, masking, 5, shuffle_a, &record);

  const Tensor qi = masking.encoder_input(q), ki = masking.encoder_input(k);
  b.momentum_update_key_encoder();
  Tensor key_saliency;
  const Tensor keys = b.encode_keys(ki, shuffle_b, &key_saliency);
  const MaskedBatch masked = masking.mask(q, k, qi, ki, key_saliency, b.encoder_k(), 5);
  const Tensor queries = b.encode_query(masked.query);
  const Tensor t = b.encode_hard_negatives(masked.hard_negative, shuffle_b);
  const ContrastiveOutput by_hand = b.contrast(queries, keys, t);

  EXPECT_EQ(out.loss.item(), by_hand.loss.item());
  EXPECT_TRUE(all_close(record.query, masked.query, 0, 0));
  EXPECT_TRUE(all_close(a.queue(), b.queue(), 0, 0));
  EXPECT_EQ(a.queue_ptr(), 8);
  // The query encoder receives the gradient through the masked query.
  a.encoder_q().zero_grad();
  out.loss.backward();
  double g = 0;
  for (double v : a.encoder_q().flat_gradients().to_vector<double>()) g += v * v;
  EXPECT_GT(g, 0);
}

// A small-stem ResNet-18 in eval mode, also written to `path` with torchvision's names.
std::shared_ptr<nn::ResNet> write_small_resnet18(const std::string& path, uint64_t seed) {
  nn::ResNetConfig rc;
  rc.arch = "resnet18";
  rc.stem = nn::ResNetStem::SmallImage;
  auto model = nn::make_resnet(rc, seed);
  model->eval();
  save_safetensors(path, model->state_dict());
  return model;
}

// A ResNet-18 written with torchvision's names (what a user converts from a .pth file), and the
// same weights inside a `moco pretrain` checkpoint: both load as the same frozen localizer.
TEST(Masking, PretrainedLocalizerLoadsTorchvisionNamesAndCheckpointsAndRefusesOthers) {
  TempDir dir("localizer");
  const std::string torchvision = (dir.path() / "resnet18.safetensors").string();
  const auto model = write_small_resnet18(torchvision, 21);
  NamedTensors in_checkpoint;
  for (const auto& [name, t] : model->state_dict())
    if (name.rfind("fc.", 0) != 0) in_checkpoint.emplace_back("encoder_q." + name, t);
  in_checkpoint.emplace_back("encoder_q.fc.0.weight", Tensor::zeros({4, 512}));  // an MLP head: dropped
  const std::string checkpoint = (dir.path() / "checkpoint.safetensors").string();
  save_safetensors(checkpoint, in_checkpoint);

  const Tensor x = views(3, 22);
  NoGradGuard no_grad;
  const Tensor expected = model->feature_map(x);
  for (const std::string& path : {torchvision, checkpoint}) {
    auto localizer = load_localizer(path, Device::cpu());
    EXPECT_EQ(localizer->config().arch, "resnet18");
    EXPECT_TRUE(all_close(localizer->feature_map(x), expected, 0, 0)) << path;
  }
  // A file missing a backbone tensor, a file that is no ResNet, and no file at all.
  NamedTensors missing;
  for (const auto& [name, t] : model->state_dict())
    if (name != "layer2.0.conv1.weight") missing.emplace_back(name, t);
  const std::string broken = (dir.path() / "broken.safetensors").string();
  save_safetensors(broken, missing);
  EXPECT_THROW(load_localizer(broken, Device::cpu()), Error);
  const std::string other = (dir.path() / "other.safetensors").string();
  save_safetensors(other, {{"weight", Tensor::zeros({2})}});
  EXPECT_THROW(load_localizer(other, Device::cpu()), Error);
  EXPECT_THROW(load_localizer((dir.path() / "absent.safetensors").string(), Device::cpu()), Error);
}

TEST(Masking, PretrainedSourceMasksWithTheLocalizersMapsOfTheRgbViews) {
  TempDir dir("localizer_maps");
  const std::string path = (dir.path() / "resnet18.safetensors").string();
  const auto model = write_small_resnet18(path, 23);
  MaskingConfig mc = masking_config(MaskStrategy::Hp, 1, SaliencySourceKind::Pretrained);
  mc.saliency.file = path;
  const SaliencyGuidedMasking masking(mc, Device::cpu());
  MoCo moco(small_config(), 9, Device::cpu());
  const Tensor q = views(4, 24), k = views(4, 25);
  const MaskedBatch b = masking.mask(q, k, masking.encoder_input(q), masking.encoder_input(k), Tensor(),
                                     moco.encoder_k(), 0);
  NoGradGuard no_grad;
  EXPECT_TRUE(all_close(b.saliency_query, saliency_maps(model->feature_map(q)), 0, 0));
  EXPECT_TRUE(all_close(b.saliency_key, saliency_maps(model->feature_map(k)), 0, 0));
  EXPECT_EQ(b.fg_query.to_vector<uint8_t>(),
            foreground_cells(b.saliency_query, ForegroundRule::Threshold).to_vector<uint8_t>());
}

}  // namespace
}  // namespace engine::ssl
