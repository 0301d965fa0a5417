// module.cpp - the Module tree: registration, traversal, state dicts, devices, flat parameters.
#include "layers/module.h"

#include <algorithm>
#include <map>

#include "engine/autograd.h"

namespace engine::nn {

namespace {

constexpr int64_t kFlatAlignment = 16;  // elements: 64 bytes of f32

int64_t align_up(int64_t n) { return (n + kFlatAlignment - 1) / kFlatAlignment * kFlatAlignment; }

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : name.empty() ? prefix : prefix + "." + name;
}

// "a, b, c" with at most `limit` entries and a count of the rest.
std::string list_some(const std::vector<std::string>& items, size_t limit = 12) {
  std::string out;
  for (size_t k = 0; k < items.size() && k < limit; ++k) out += (k ? ", " : "") + items[k];
  if (items.size() > limit) out += fmt::format(", ... ({} more)", items.size() - limit);
  return out;
}

}  // namespace

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (output_hook) output_hook(y);
  return y;
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

void Module::register_parameter(std::string name, Tensor* slot) {
  ENGINE_CHECK(slot && slot->defined(), "register_parameter('{}'): the parameter must be created first", name);
  slot->requires_grad_(true);
  parameters_.push_back({std::move(name), slot, false});
}

void Module::register_buffer(std::string name, Tensor* slot, bool host) {
  ENGINE_CHECK(slot && slot->defined(), "register_buffer('{}'): the buffer must be created first", name);
  buffers_.push_back({std::move(name), slot, host});
}

void Module::register_module(std::string name, std::shared_ptr<Module> module) {
  ENGINE_CHECK(module != nullptr, "register_module('{}'): null module", name);
  children_.emplace_back(std::move(name), std::move(module));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  ENGINE_CHECK(module != nullptr, "replace_module('{}'): null module", name);
  for (auto& [child_name, child] : children_) {
    if (child_name == name) {
      child = std::move(module);
      return;
    }
  }
  ENGINE_THROW("replace_module: {} has no child '{}'", type_name(), name);
}

std::shared_ptr<Module> Module::child_ptr(const std::string& name) const {
  for (const auto& [child_name, child] : children_)
    if (child_name == name) return child;
  std::vector<std::string> names;
  for (const auto& [child_name, child] : children_) names.push_back(child_name);
  ENGINE_THROW("{} has no child '{}'; its children are: {}", type_name(), name, list_some(names));
}

Module& Module::child(const std::string& name) const { return *child_ptr(name); }

void Module::collect(const std::string& prefix, bool parameters, bool buffers, std::vector<Slot>& out) const {
  if (parameters)
    for (const Slot& s : parameters_) out.push_back({join(prefix, s.name), s.tensor, s.host});
  if (buffers)
    for (const Slot& s : buffers_) out.push_back({join(prefix, s.name), s.tensor, s.host});
  for (const auto& [name, child] : children_) child->collect(join(prefix, name), parameters, buffers, out);
}

NamedTensors Module::named_parameters() const {
  std::vector<Slot> slots;
  collect("", true, false, slots);
  NamedTensors out;
  for (const Slot& s : slots) out.emplace_back(s.name, *s.tensor);
  return out;
}

NamedTensors Module::named_buffers() const {
  std::vector<Slot> slots;
  collect("", false, true, slots);
  NamedTensors out;
  for (const Slot& s : slots) out.emplace_back(s.name, *s.tensor);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [name, child] : children_)
    for (auto& [sub, module] : child->named_modules()) out.emplace_back(join(name, sub), module);
  return out;
}

NamedTensors Module::state_dict() const {
  std::vector<Slot> slots;
  collect("", true, true, slots);
  NamedTensors out;
  for (const Slot& s : slots) out.emplace_back(s.name, s.tensor->detach());
  return out;
}

std::string Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::vector<Slot> slots;
  collect("", true, true, slots);
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) given[name] = &t;

  std::vector<std::string> missing, unexpected, mismatched;
  std::map<std::string, bool> known;
  for (const Slot& s : slots) {
    known[s.name] = true;
    auto it = given.find(s.name);
    if (it == given.end())
      missing.push_back(s.name);
    else if (it->second->shape() != s.tensor->shape())
      mismatched.push_back(fmt::format("{} (file {}, model {})", s.name, shape_str(it->second->shape()),
                                       shape_str(s.tensor->shape())));
  }
  for (const auto& [name, t] : state)
    if (!known.count(name)) unexpected.push_back(name);

  std::string report;
  if (!missing.empty()) report += fmt::format("\n  missing keys ({}): {}", missing.size(), list_some(missing));
  if (!unexpected.empty())
    report += fmt::format("\n  unexpected keys ({}): {}", unexpected.size(), list_some(unexpected));
  if (!mismatched.empty())
    report += fmt::format("\n  mis-shaped keys ({}): {}", mismatched.size(), list_some(mismatched, 6));
  ENGINE_CHECK(!strict || report.empty(),
               "load_state_dict into {}: the weights do not fit the model (nothing was loaded):{}\n  (is it the "
               "right architecture? a checkpoint of a whole MoCo model needs its encoder's prefix stripped)",
               type_name(), report);

  NoGradGuard no_grad;
  for (const Slot& s : slots) {
    auto it = given.find(s.name);
    if (it != given.end() && it->second->shape() == s.tensor->shape()) s.tensor->detach().copy_(*it->second);
  }
  return report;
}

void Module::to(Device device) {
  move_tensors([device](const Tensor& t) { return t.to(device); }, /*host_buffers=*/false);
}

void Module::to(DType dtype) {
  ENGINE_CHECK(dtype_is_floating(dtype), "Module::to: parameters need a floating dtype, found {}", dtype_name(dtype));
  move_tensors([dtype](const Tensor& t) { return dtype_is_floating(t.dtype()) ? t.to(dtype) : t; },
               /*host_buffers=*/true);
}

void Module::move_tensors(const std::function<Tensor(const Tensor&)>& convert, bool host_buffers) {
  NoGradGuard no_grad;
  std::vector<Slot> buffers;
  collect("", false, true, buffers);
  for (const Slot& s : buffers)
    if (!s.host || host_buffers) *s.tensor = convert(*s.tensor);
  if (is_flat()) {
    flat_params_ = convert(flat_params_);
    flat_grads_ = convert(flat_grads_);
    bind_flat_views(/*copy_values=*/false);
    return;
  }
  std::vector<Slot> params;
  collect("", true, false, params);
  for (const Slot& s : params) {
    const Tensor grad = s.tensor->grad();
    *s.tensor = convert(s.tensor->detach());
    s.tensor->requires_grad_(true);
    if (grad.defined()) s.tensor->set_grad(convert(grad));
  }
}

void Module::zero_grad() {
  NoGradGuard no_grad;
  if (is_flat()) {
    flat_grads_.zero_();
    return;
  }
  for (Tensor& p : parameters()) {
    Tensor g = p.grad();
    if (g.defined()) g.zero_();
  }
}

void Module::flatten_parameters() {
  if (is_flat()) return;
  NoGradGuard no_grad;
  std::vector<Slot> slots;
  collect("", true, false, slots);
  ENGINE_CHECK(!slots.empty(), "flatten_parameters: {} has no parameters", type_name());
  const DType dtype = slots[0].tensor->dtype();
  const Device device = slots[0].tensor->device();
  int64_t total = 0;
  for (const Slot& s : slots) {
    ENGINE_CHECK(s.tensor->dtype() == dtype && s.tensor->device() == device,
                 "flatten_parameters: every parameter must share one dtype and device; '{}' is {} but '{}' is {}",
                 slots[0].name, slots[0].tensor->str(), s.name, s.tensor->str());
    total = align_up(total) + s.tensor->numel();
  }
  flat_params_ = Tensor::zeros({align_up(total)}, dtype, device);
  flat_grads_ = Tensor::zeros({align_up(total)}, dtype, device);
  bind_flat_views(/*copy_values=*/true);
}

void Module::bind_flat_views(bool copy_values) {
  NoGradGuard no_grad;
  std::vector<Slot> slots;
  collect("", true, false, slots);
  int64_t offset = 0;
  for (const Slot& s : slots) {
    offset = align_up(offset);
    const int64_t n = s.tensor->numel();
    const Shape shape = s.tensor->shape();
    Tensor param = flat_params_.slice(0, offset, offset + n).view(shape);
    if (copy_values) param.copy_(s.tensor->detach());
    param.requires_grad_(true);
    param.set_grad(flat_grads_.slice(0, offset, offset + n).view(shape));
    *s.tensor = param;
    offset += n;
  }
}

}  // namespace engine::nn
