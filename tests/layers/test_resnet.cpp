// test_resnet.cpp - the architecture: torchvision's keys and shapes, parameter counts, output
// shapes of both stems, the replaceable head, and the initialisation statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "engine/autograd.h"
#include "layers/resnet.h"
#include "tests/common/test_helpers.h"
#include "tests/layers/fixture_weights.h"

namespace engine::testing {
namespace {

std::string describe(const Tensor& t) {
  std::string dims;
  for (int64_t d : t.shape()) {  // appended piece by piece: GCC 12 warns (-Wrestrict) on "x" + string&&
    if (!dims.empty()) dims += 'x';
    dims += std::to_string(d);
  }
  const char* dtype = t.dtype() == DType::i64 ? "int64" : "float32";
  return (dims.empty() ? "scalar" : dims) + " " + dtype;
}

TEST(ResNet, StateDictKeysShapesAndOrderAreTorchvisions) {
  std::ifstream in(fixture_path("resnet_keys.txt"));
  ASSERT_TRUE(in.good());
  std::map<std::string, std::vector<std::string>> expected;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string arch, name, shape, dtype;
    fields >> arch >> name >> shape >> dtype;
    expected[arch].push_back(name + " " + shape + " " + dtype);
  }
  ASSERT_EQ(expected.size(), 3u);
  for (const auto& [arch, lines] : expected) {
    nn::ResNetConfig config;
    config.arch = arch;
    std::vector<std::string> actual;
    for (const auto& [name, t] : nn::make_resnet(config, 1)->state_dict()) actual.push_back(name + " " + describe(t));
    EXPECT_EQ(actual, lines) << arch;
  }
}

TEST(ResNet, ParameterCountsAreTorchvisions) {
  const std::pair<const char*, int64_t> counts[] = {
      {"resnet18", 11689512}, {"resnet34", 21797672}, {"resnet50", 25557032}};
  for (const auto& [arch, count] : counts) {
    nn::ResNetConfig config;
    config.arch = arch;
    int64_t n = 0;
    for (const Tensor& p : nn::make_resnet(config, 1)->parameters()) n += p.numel();
    EXPECT_EQ(n, count) << arch;
  }
}

TEST(ResNet, BothStemsGiveTheExpectedShapes) {
  NoGradGuard no_grad;
  nn::ResNetConfig config;
  config.arch = "resnet18";
  config.num_classes = 7;
  auto imagenet = nn::make_resnet(config, 1);
  imagenet->eval();
  const Tensor x64 = make_input({{2, 3, 64, 64}}, 1, DType::f32, Device::cpu());
  EXPECT_EQ(imagenet->features(x64).shape(), (Shape{2, 512}));
  EXPECT_EQ((*imagenet)(x64).shape(), (Shape{2, 7}));

  config.stem = nn::ResNetStem::SmallImage;
  auto small = nn::make_resnet(config, 1);
  small->eval();
  Shape layer4;
  small->child("layer4").output_hook = [&](const Tensor& y) { layer4 = y.shape(); };
  const Tensor x32 = make_input({{2, 3, 32, 32}}, 2, DType::f32, Device::cpu());
  EXPECT_EQ((*small)(x32).shape(), (Shape{2, 7}));
  EXPECT_EQ(layer4, (Shape{2, 512, 4, 4})) << "3x3 stride-1 stem, no max-pool: 32 / 8";
  EXPECT_EQ(small->state_dict()[0].second.shape(), (Shape{64, 3, 3, 3}));
}

TEST(ResNet, HeadIsReplaceableAndNamedFc) {
  Generator gen(3);
  nn::ResNetConfig config;
  config.arch = "resnet18";
  auto model = nn::make_resnet(config, 1);
  model->replace_head(std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(512, 512, gen), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(512, 128, gen)}));
  const NamedTensors state = model->state_dict();
  EXPECT_EQ(state[state.size() - 4].first, "fc.0.weight");
  EXPECT_EQ(state.back().first, "fc.2.bias");
  NoGradGuard no_grad;
  model->eval();
  EXPECT_EQ((*model)(make_input({{1, 3, 32, 32}}, 4, DType::f32, Device::cpu())).shape(), (Shape{1, 128}));
}

TEST(ResNet, InitialisationFollowsTorchvision) {
  nn::ResNetConfig config;
  config.arch = "resnet50";
  auto model = nn::make_resnet(config, 11);
  for (const auto& [name, t] : model->state_dict()) {
    const std::vector<double> v = t.to_vector<double>();
    double mean = 0, sq = 0, max_abs = 0;
    for (double x : v) {
      mean += x;
      sq += x * x;
      max_abs = std::max(max_abs, std::fabs(x));
    }
    mean /= static_cast<double>(v.size());
    const double std = std::sqrt(sq / static_cast<double>(v.size()) - mean * mean);
    if (t.dim() == 4) {  // Kaiming normal, fan_out
      const double expected = std::sqrt(2.0 / static_cast<double>(t.size(0) * t.size(2) * t.size(3)));
      const double tolerance = 5.0 * expected / std::sqrt(static_cast<double>(v.size()));
      EXPECT_NEAR(std, expected, tolerance + 0.02 * expected) << name;
      EXPECT_NEAR(mean, 0.0, 5.0 * expected / std::sqrt(static_cast<double>(v.size()))) << name;
    } else if (name == "fc.weight" || name == "fc.bias") {  // uniform +-1/sqrt(2048)
      EXPECT_LE(max_abs, 1.0 / std::sqrt(2048.0)) << name;
      EXPECT_GT(max_abs, 0.9 / std::sqrt(2048.0)) << name;
    } else if (name.find("running_var") != std::string::npos || name.ends_with(".weight")) {
      EXPECT_EQ(mean, 1.0) << name;
      EXPECT_EQ(std, 0.0) << name;
    } else {
      EXPECT_EQ(max_abs, 0.0) << name;  // BN bias, running_mean, num_batches_tracked
    }
  }
}

TEST(ResNet, UnknownArchitectureIsNamed) {
  nn::ResNetConfig config;
  config.arch = "resnet51";
  try {
    nn::make_resnet(config, 1);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resnet18, resnet34, resnet50"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::testing
