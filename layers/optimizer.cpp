// optimizer.cpp - see optimizer.h.
#include "layers/optimizer.h"

#include <cmath>
#include <map>

#include "engine/check.h"
#include "engine/cuda_graph.h"
#include "ops/sgd_step.h"

namespace engine::nn {

namespace {

// The view of `flat_other` that sits where `param` sits in `flat_params` (same layout).
Tensor matching_view(const Tensor& param, const Tensor& flat_params, const Tensor& flat_other) {
  const int64_t offset = flat_other.offset() + (param.offset() - flat_params.offset());
  return Tensor::from_storage(flat_other.storage(), param.shape(), param.strides(), offset, flat_other.dtype());
}

void check_flat(const Module& model, const char* who) {
  ENGINE_CHECK(model.is_flat(),
               "{}: the model's parameters must be flat (call flatten_parameters() first): one launch updates them",
               who);
}

// A momentum buffer laid out as the model's flat parameters, zero.
Tensor flat_zeros_like(const Module& model) {
  const Tensor& params = model.flat_parameters();
  return Tensor::zeros(params.shape(), params.dtype(), params.device());
}

// The model's flat parameters, checked to be where they were when the optimizer made `momentum`.
Tensor current_flat_parameters(const Module& model, const Tensor& momentum, const char* who) {
  Tensor params = model.flat_parameters();
  ENGINE_CHECK(params.device() == momentum.device() && params.numel() == momentum.numel(),
               "{}: the model moved or was re-flattened after the optimizer was made ({} now, {} then); make the "
               "optimizer after the model is on its device",
               who, params.str(), momentum.str());
  return params;
}

// "momentum_buffer.<name>" for every parameter: the views of `momentum` where the parameters sit.
NamedTensors momentum_views(const Module& model, const Tensor& momentum) {
  NamedTensors out;
  for (const auto& [name, param] : model.named_parameters())
    out.emplace_back("momentum_buffer." + name, matching_view(param, model.flat_parameters(), momentum));
  return out;
}

// Copies `state` into the views `mine` (momentum_views of the optimizer's buffer). Strict: every
// view must be given with its shape and nothing else; otherwise nothing is copied and the error
// lists every problem.
void load_momentum_views(const NamedTensors& mine, const NamedTensors& state, int64_t steps, const char* who) {
  ENGINE_CHECK(steps >= 0, "{}::load_state_dict: the step count must be >= 0, found {}", who, steps);
  std::map<std::string, Tensor> given(state.begin(), state.end());
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
  ENGINE_CHECK(problems.empty(), "{}::load_state_dict: the optimizer state does not match the model:{}", who,
               problems);
  for (const auto& [name, view] : mine) {
    Tensor target = view;
    target.copy_(given.at(name));
  }
}

// One LARS segment per named parameter, where it sits in the flat buffer; parameters with one
// dimension or none (biases, BatchNorm's weight and bias) are excluded (optimizer.h).
LarsPlan lars_plan(const Module& model) {
  const Tensor& flat = model.flat_parameters();
  std::vector<LarsSegment> segments;
  for (const auto& [name, param] : model.named_parameters())
    segments.push_back({param.offset() - flat.offset(), param.numel(), param.dim() > 1});
  return LarsPlan(std::move(segments), flat.numel(), flat.device());
}

}  // namespace

// ------------------------------------------------------------------ Optimizer

Optimizer::Optimizer(const Module& model, const char* who) {
  check_flat(model, who);
  lr_ = Tensor::zeros({1}, DType::f64, model.flat_parameters().device());
}

void Optimizer::set_lr(double lr) {
  ENGINE_CHECK(std::isfinite(lr) && lr >= 0.0,
               "Optimizer::set_lr: the learning rate must be finite and >= 0, found {}; check the schedule's "
               "base learning rate and its inputs",
               lr);
  // A fill kernel takes the value as its argument: nothing is read from host memory later, so this
  // may run right before a graph replay that reads lr_.
  lr_.fill_(lr);
  lr_set_ = true;
}

void Optimizer::step(double lr) {
  set_lr(lr);
  step();
}

const Tensor& Optimizer::lr_for_step(const char* who) const {
  ENGINE_CHECK(lr_set_, "{}::step: no learning rate has been set; call set_lr(lr) first, or step(lr)", who);
  return lr_;
}

// ------------------------------------------------------------------ Sgd

Sgd::Sgd(Module& model, SgdConfig config) : Optimizer(model, "Sgd"), model_(model), config_(config) {
  momentum_ = flat_zeros_like(model);
}

void Sgd::step() {
  Tensor params = current_flat_parameters(model_, momentum_, "Sgd");
  SgdStepOptions opt;
  opt.momentum = config_.momentum;
  opt.weight_decay = config_.weight_decay;
  ENGINE_CHECK(steps_ > 0 || !capturing_graph(),
               "Sgd: the first step initialises the momentum buffer and cannot be captured in a CUDA graph (its "
               "replays would initialise it again); run one step before the capture");
  sgd_step(params, model_.flat_gradients(), momentum_, opt, lr_for_step("Sgd"), steps_ == 0);
  ++steps_;
  repeat_on_replay([this] { ++steps_; });  // a captured step counts at each replay (engine/cuda_graph.h)
}

NamedTensors Sgd::state_dict() const { return momentum_views(model_, momentum_); }

void Sgd::load_state_dict(const NamedTensors& state, int64_t steps) {
  load_momentum_views(state_dict(), state, steps, "Sgd");
  steps_ = steps;
}

// ------------------------------------------------------------------ Lars

Lars::Lars(Module& model, LarsConfig config)
    : Optimizer(model, "Lars"), model_(model), config_(config), plan_(lars_plan(model)) {
  momentum_ = flat_zeros_like(model);
}

void Lars::step() {
  Tensor params = current_flat_parameters(model_, momentum_, "Lars");
  LarsStepOptions opt;
  opt.momentum = config_.momentum;
  opt.weight_decay = config_.weight_decay;
  opt.eta = config_.eta;
  lars_step(params, model_.flat_gradients(), momentum_, plan_, opt, lr_for_step("Lars"));
  ++steps_;
  repeat_on_replay([this] { ++steps_; });  // a captured step counts at each replay (engine/cuda_graph.h)
}

NamedTensors Lars::state_dict() const { return momentum_views(model_, momentum_); }

void Lars::load_state_dict(const NamedTensors& state, int64_t steps) {
  load_momentum_views(state_dict(), state, steps, "Lars");
  steps_ = steps;
}

}  // namespace engine::nn
