// optimizer.cpp - see optimizer.h.
#include "layers/optimizer.h"

#include <map>

#include "engine/check.h"
#include "ops/sgd_step.h"

namespace engine::nn {

namespace {

// The view of `flat_other` that sits where `param` sits in `flat_params` (same layout).
Tensor matching_view(const Tensor& param, const Tensor& flat_params, const Tensor& flat_other) {
  const int64_t offset = flat_other.offset() + (param.offset() - flat_params.offset());
  return Tensor::from_storage(flat_other.storage(), param.shape(), param.strides(), offset, flat_other.dtype());
}

}  // namespace

Sgd::Sgd(Module& model, SgdConfig config) : model_(model), config_(config) {
  ENGINE_CHECK(model.is_flat(),
               "Sgd: the model's parameters must be flat (call flatten_parameters() first): one launch updates them");
  momentum_ = Tensor::zeros(model.flat_parameters().shape(), model.flat_parameters().dtype(),
                            model.flat_parameters().device());
}

void Sgd::step(double lr) {
  Tensor params = model_.flat_parameters();
  ENGINE_CHECK(params.device() == momentum_.device() && params.numel() == momentum_.numel(),
               "Sgd: the model moved or was re-flattened after the optimizer was made ({} now, {} then); make the "
               "optimizer after the model is on its device",
               params.str(), momentum_.str());
  SgdStepOptions opt;
  opt.lr = lr;
  opt.momentum = config_.momentum;
  opt.weight_decay = config_.weight_decay;
  sgd_step(params, model_.flat_gradients(), momentum_, opt, steps_ == 0);
  ++steps_;
}

NamedTensors Sgd::state_dict() const {
  NamedTensors out;
  for (const auto& [name, param] : model_.named_parameters())
    out.emplace_back("momentum_buffer." + name, matching_view(param, model_.flat_parameters(), momentum_));
  return out;
}

void Sgd::load_state_dict(const NamedTensors& state, int64_t steps) {
  ENGINE_CHECK(steps >= 0, "Sgd::load_state_dict: the step count must be >= 0, found {}", steps);
  std::map<std::string, Tensor> given(state.begin(), state.end());
  const NamedTensors mine = state_dict();
  std::string problems;
  for (const auto& [name, view] : mine) {
    auto it = given.find(name);
    if (it == given.end())
      problems += "\n  missing: " + name;
    else if (it->second.shape() != view.shape())
      problems += "\n  " + name + ": expected shape " + shape_str(view.shape()) + ", found " +
                  shape_str(it->second.shape());
  }
  for (const auto& [name, tensor] : given) {
    bool known = false;
    for (const auto& [mine_name, view] : mine) known |= mine_name == name;
    if (!known) problems += "\n  unexpected: " + name;
  }
  ENGINE_CHECK(problems.empty(), "Sgd::load_state_dict: the optimizer state does not match the model:{}", problems);
  for (const auto& [name, view] : mine) {
    Tensor target = view;
    target.copy_(given.at(name));
  }
  steps_ = steps;
}

}  // namespace engine::nn
