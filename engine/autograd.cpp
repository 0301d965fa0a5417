// autograd.cpp - recording nodes and walking the graph backward.
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/tensor_copy.h"

namespace engine {

namespace {
thread_local bool g_grad_enabled = true;

// out = a + b over contiguous tensors of one shape (out may be a).
void add_contiguous(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.device().is_cpu()) {
    add_contiguous_cpu(out.data_ptr(), a.data_ptr(), b.data_ptr(), out.dtype(), out.numel());
  } else {
    ENGINE_DISPATCH_CUDA(out.device(), "gradient accumulation",
                         add_contiguous_cuda(out.device().index, out.data_ptr(), a.data_ptr(), b.data_ptr(),
                                             out.dtype(), out.numel()));
  }
}

// a + b for two gradients of the same tensor (a fresh tensor: either may alias other data).
// Summed in a's memory format, so that the two gradients of a channels-last activation (a block's
// input feeds its first convolution and the shortcut) are added as they are, with no NCHW round trip.
Tensor add_gradients(const Tensor& a, const Tensor& b) {
  const MemoryFormat format = a.dim() == 4 ? a.memory_format() : MemoryFormat::NCHW;
  const Tensor x = a.contiguous(format), y = b.contiguous(format);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  add_contiguous(out, x, y);
  return out;
}

// A dense tensor's format (NCHW when it is neither dense layout): where its values lie in order.
MemoryFormat dense_format(const Tensor& t) {
  return t.dim() == 4 && t.is_contiguous(MemoryFormat::NHWC) ? MemoryFormat::NHWC : MemoryFormat::NCHW;
}

// target += g in place, for a leaf gradient dense in its own format (a parameter's view of its
// model's flat gradient buffer stays that view, so one optimizer launch over the buffer sees every
// gradient).
void accumulate_into(const Tensor& target, const Tensor& g) {
  add_contiguous(target, target, g.contiguous(dense_format(target)));
}

// Inputs before the nodes that use them: depth-first search from the root, iterative so a deep
// network cannot overflow the stack.
std::vector<AutogradMeta*> topological_order(AutogradMeta* root) {
  std::vector<AutogradMeta*> order;
  std::unordered_set<AutogradMeta*> visited{root};
  std::vector<std::pair<AutogradMeta*, size_t>> stack{{root, 0}};  // (tensor, next input to visit)
  while (!stack.empty()) {
    auto& [meta, next] = stack.back();
    const Node* node = meta->grad_fn.get();
    if (node && next < node->inputs.size()) {
      AutogradMeta* input = node->inputs[next++].get();
      if (input && visited.insert(input).second) stack.emplace_back(input, 0);
    } else {
      order.push_back(meta);
      stack.pop_back();
    }
  }
  return order;
}
}  // namespace

bool GradMode::enabled() { return g_grad_enabled; }
void GradMode::set_enabled(bool enabled) { g_grad_enabled = enabled; }

namespace autograd {

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

void record(std::shared_ptr<Node> node, Tensor& output, std::initializer_list<const Tensor*> inputs) {
  for (const Tensor* t : inputs) {
    const bool wants = t && t->defined() && t->requires_grad();
    node->inputs.push_back(wants ? t->impl()->autograd : nullptr);
    node->input_shapes.push_back(t && t->defined() ? t->shape() : Shape{});
  }
  auto meta = std::make_shared<AutogradMeta>();
  meta->grad_fn = std::move(node);
  output.impl()->autograd = std::move(meta);
}

}  // namespace autograd

bool Tensor::requires_grad() const { return checked_impl("requires_grad").autograd != nullptr; }

Tensor& Tensor::requires_grad_(bool enabled) {
  TensorImpl& impl = checked_impl("requires_grad_");
  ENGINE_CHECK(is_leaf(),
               "requires_grad_ on a tensor produced by an op ({}): only leaves (parameters, inputs) "
               "can be marked; use detach() first to make a new leaf",
               impl.autograd->grad_fn->name());
  if (enabled) {
    ENGINE_CHECK(dtype_is_floating(impl.dtype), "requires_grad_ needs a floating dtype, found {}",
                 dtype_name(impl.dtype));
    if (!impl.autograd) impl.autograd = std::make_shared<AutogradMeta>();
  } else {
    impl.autograd.reset();
  }
  return *this;
}

bool Tensor::is_leaf() const {
  const TensorImpl& impl = checked_impl("is_leaf");
  return !impl.autograd || !impl.autograd->grad_fn;
}

Tensor Tensor::grad() const {
  const TensorImpl& impl = checked_impl("grad");
  return impl.autograd ? impl.autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) {
  TensorImpl& impl = checked_impl("set_grad");
  ENGINE_CHECK(impl.autograd && is_leaf(), "set_grad on a tensor that is not a leaf requiring grad: {}", str());
  if (grad.defined()) {
    check_same_shape(*this, grad, "set_grad");
    check_same_device(*this, grad, "set_grad");
    check_same_dtype(*this, grad, "set_grad");
  }
  impl.autograd->grad = grad;
}

void Tensor::register_grad_ready_hook(GradReadyHook hook) {
  TensorImpl& impl = checked_impl("register_grad_ready_hook");
  ENGINE_CHECK(impl.autograd && is_leaf(),
               "register_grad_ready_hook needs a leaf that requires grad (a parameter), found {}", str());
  impl.autograd->grad_ready_hooks.push_back(std::move(hook));
}

Tensor Tensor::detach() const {
  const TensorImpl& impl = checked_impl("detach");
  return from_storage(impl.storage, impl.shape, impl.strides, impl.offset, impl.dtype);
}

void Tensor::backward(const Tensor& seed, bool retain_graph) const {
  const TensorImpl& impl = checked_impl("backward");
  ENGINE_CHECK(impl.autograd != nullptr,
               "backward on a tensor that does not require grad ({}): no input of the ops that "
               "made it requires grad, or it was computed under NoGradGuard",
               str());
  Tensor root_grad = seed;
  if (!root_grad.defined()) {
    ENGINE_CHECK(numel() == 1,
                 "backward on a non-scalar tensor {} needs a seed gradient of the same shape; "
                 "reduce it to a scalar (sum, mean) or pass backward(seed)",
                 str());
    root_grad = Tensor::ones(shape(), dtype(), device());
  } else {
    check_same_shape(*this, root_grad, "backward(seed)");
    check_same_device(*this, root_grad, "backward(seed)");
    check_same_dtype(*this, root_grad, "backward(seed)");
  }

  NoGradGuard no_grad;
  AutogradMeta* root = impl.autograd.get();
  std::unordered_map<AutogradMeta*, Tensor> pending{{root, root_grad}};  // summed gradients so far
  const std::vector<AutogradMeta*> order = topological_order(root);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    AutogradMeta* meta = *it;
    auto found = pending.find(meta);
    if (found == pending.end()) continue;  // every path to it gave an undefined gradient
    Tensor grad = std::move(found->second);
    pending.erase(found);

    if (!meta->grad_fn) {  // a leaf: accumulate, then tell whoever waits for this gradient
      if (!meta->grad.defined())
        meta->grad = grad.clone();
      else if (meta->grad.is_contiguous(dense_format(meta->grad)))
        accumulate_into(meta->grad, grad);  // in place: grad may be a view of a flat buffer
      else
        meta->grad = add_gradients(meta->grad, grad);
      for (auto& hook : meta->grad_ready_hooks) hook(meta->grad);
      continue;
    }
    Node& node = *meta->grad_fn;
    ENGINE_CHECK(!node.released,
                 "backward through {} a second time, but its saved context was freed by the first "
                 "backward; call the first one as backward(seed, /*retain_graph=*/true)",
                 node.name());
    std::vector<Tensor> input_grads = node.backward(grad);
    ENGINE_CHECK(input_grads.size() == node.inputs.size(),
                 "{}::backward returned {} gradients for {} inputs", node.name(), input_grads.size(),
                 node.inputs.size());
    if (!retain_graph) {
      node.release_saved();
      node.released = true;
    }
    for (size_t k = 0; k < input_grads.size(); ++k) {
      AutogradMeta* input = node.inputs[k].get();
      Tensor& g = input_grads[k];
      if (!input || !g.defined()) continue;
      ENGINE_CHECK(g.shape() == node.input_shapes[k],
                   "{}::backward returned a gradient of shape {} for input {} of shape {}",
                   node.name(), shape_str(g.shape()), k, shape_str(node.input_shapes[k]));
      auto [slot, inserted] = pending.try_emplace(input, g);
      if (!inserted) slot->second = add_gradients(slot->second, g);
    }
  }
}

}  // namespace engine
