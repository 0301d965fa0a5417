// test_module.cpp - the Module base: names and order, strict loading, devices, flat parameters.
#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "layers/layers.h"
#include "ops/reduce_dim.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// conv - bn - relu, then a Linear: a small tree with parameters, buffers and nesting.
std::shared_ptr<nn::Sequential> small_net(Generator& gen) {
  auto features = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(3, 4, 3, 1, 1, gen), std::make_shared<nn::BatchNorm2d>(4),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::GlobalAvgPool2d>()});
  return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{features});
}

std::vector<std::string> keys(const NamedTensors& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors) out.push_back(name);
  return out;
}

std::string load_error(nn::Module& m, const NamedTensors& state) {
  try {
    m.load_state_dict(state, true);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Module, StateDictHasPyTorchNamesAndOrder) {
  Generator gen(1);
  auto net = small_net(gen);
  EXPECT_EQ(keys(net->state_dict()),
            (std::vector<std::string>{"0.0.weight", "0.1.weight", "0.1.bias", "0.1.running_mean", "0.1.running_var",
                                      "0.1.num_batches_tracked"}));
  EXPECT_EQ(keys(net->named_parameters()), (std::vector<std::string>{"0.0.weight", "0.1.weight", "0.1.bias"}));
  std::vector<std::string> modules;
  for (auto& [path, m] : net->named_modules()) modules.push_back(path + ":" + m->type_name());
  EXPECT_EQ(modules, (std::vector<std::string>{":Sequential", "0:Sequential", "0.0:Conv2d", "0.1:BatchNorm2d",
                                               "0.2:ReLU", "0.3:AdaptiveAvgPool2d"}));
}

TEST(Module, StrictLoadListsEveryProblemAndChangesNothing) {
  Generator gen(2);
  auto net = small_net(gen);
  const std::vector<float> before = net->state_dict()[0].second.to_vector<float>();
  NamedTensors state = net->state_dict();
  state.erase(state.begin() + 2);                              // 0.1.bias missing
  state.emplace_back("0.2.weight", Tensor::zeros({1}));         // unexpected
  state[0].second = Tensor::zeros({4, 3, 5, 5});               // mis-shaped
  const std::string message = load_error(*net, state);
  EXPECT_NE(message.find("missing keys (1): 0.1.bias"), std::string::npos) << message;
  EXPECT_NE(message.find("unexpected keys (1): 0.2.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("0.0.weight (file (4, 3, 5, 5), model (4, 3, 3, 3))"), std::string::npos) << message;
  EXPECT_EQ(net->state_dict()[0].second.to_vector<float>(), before) << "a refused load changes nothing";

  const std::string report = net->load_state_dict(state, /*strict=*/false);
  EXPECT_NE(report.find("missing keys"), std::string::npos);
  EXPECT_EQ(net->state_dict()[1].second.to_vector<float>(), state[1].second.to_vector<float>());
}

TEST(Module, LoadConvertsDtypeAndRoundTrips) {
  Generator gen(3), other(4);
  auto a = small_net(gen), b = small_net(other);
  NamedTensors state = a->state_dict();
  state[0].second = state[0].second.to(DType::f64);  // a file in another dtype is converted
  b->load_state_dict(state);
  for (size_t k = 0; k < state.size(); ++k)
    EXPECT_EQ(b->state_dict()[k].second.to_vector<double>(), a->state_dict()[k].second.to_vector<double>());
}

TEST(Module, TrainAndEvalReachEveryModuleAndBatchNormCountsBatches) {
  Generator gen(5);
  auto net = small_net(gen);
  net->eval();
  for (auto& [path, m] : net->named_modules()) EXPECT_FALSE(m->is_training()) << path;
  const Tensor x = make_input({{2, 3, 5, 5}}, 1, DType::f32, Device::cpu());
  (*net)(x);
  EXPECT_EQ(net->state_dict().back().second.item(), 0.0) << "eval does not count";
  net->train();
  (*net)(x);
  (*net)(x);
  EXPECT_EQ(net->state_dict().back().second.item(), 2.0);
}

TEST(Module, FlatParametersAreViewsAndGradientsAccumulateIntoTheFlatBuffer) {
  Generator gen(6);
  auto net = small_net(gen);
  const NamedTensors before = net->state_dict();
  net->flatten_parameters();
  const Tensor flat = net->flat_parameters();
  // 108 + 4 + 4 elements, each view starting at a multiple of 16: 0, 112, 128 -> 144 in all.
  EXPECT_EQ(flat.numel(), 144);
  const NamedTensors params = net->named_parameters();
  const int64_t expected_offsets[] = {0, 112, 128};
  for (size_t k = 0; k < params.size(); ++k) {
    EXPECT_EQ(params[k].second.storage(), flat.storage()) << params[k].first;
    EXPECT_EQ(params[k].second.offset(), expected_offsets[k]) << params[k].first;
    EXPECT_EQ(params[k].second.to_vector<float>(), before[k].second.to_vector<float>()) << "values kept";
  }
  const Tensor x = make_input({{2, 3, 5, 5}}, 2, DType::f32, Device::cpu());
  sum((*net)(x)).backward();
  const Tensor flat_grad = net->flat_gradients();
  double in_buffer = 0;
  for (float v : flat_grad.to_vector<float>()) in_buffer += std::fabs(v);
  EXPECT_GT(in_buffer, 0.0) << "backward wrote into the flat gradient buffer";
  for (const auto& [name, p] : params) EXPECT_EQ(p.grad().storage(), flat_grad.storage()) << name;
  net->zero_grad();
  for (float v : flat_grad.to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

TEST(Module, FlatParametersMoveToTheGpuAsOneBuffer) {
  SKIP_WITHOUT_CUDA();
  Generator gen(7);
  auto net = small_net(gen);
  net->flatten_parameters();
  const std::vector<float> values = net->flat_parameters().to_vector<float>();
  net->to(Device::cuda());
  EXPECT_EQ(net->flat_parameters().device(), Device::cuda());
  EXPECT_EQ(net->flat_parameters().to_vector<float>(), values);
  for (const auto& [name, p] : net->named_parameters()) EXPECT_EQ(p.storage(), net->flat_parameters().storage());
  const Tensor x = make_input({{2, 3, 5, 5}}, 3, DType::f32, Device::cuda());
  sum((*net)(x)).backward();
  EXPECT_EQ(net->named_parameters()[0].second.grad().storage(), net->flat_gradients().storage());
}

}  // namespace
}  // namespace engine::testing
