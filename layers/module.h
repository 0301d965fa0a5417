// module.h - the Module base: a tree of layers that own named parameters and buffers.
//
// Names follow PyTorch's: a parameter's name is the path of attribute names from the root module,
// dot-separated ("layer1.0.conv1.weight"), so state dicts move between the engine and torchvision
// unchanged. state_dict() orders entries as PyTorch does: a module's own parameters, then its own
// buffers, then each child's entries in registration order.
//
// A module registers the *fields* that hold its tensors (register_parameter(name, &weight)), so
// whoever rebinds a field - moving to a device, or flatten_parameters() turning every parameter
// into a view of one flat buffer - is seen by the module's forward at once.
//
// Flat parameters. After flatten_parameters(), all parameters of the tree are views into one
// contiguous buffer, and their gradients views into a second one of the same layout (autograd
// accumulates in place into them): the momentum update, SGD and a future all-reduce are then one
// launch over one buffer. Each view starts at a multiple of 16 elements (64-byte aligned for f32);
// the gaps are zero in both buffers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/serialize.h"
#include "engine/tensor.h"

namespace engine::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The PyTorch class name ("Conv2d", "Bottleneck"), for printing and inspect.
  virtual const char* type_name() const = 0;
  virtual Tensor forward(const Tensor& x) = 0;
  // forward(x), then the output hook if one is set. Parents call children through this.
  Tensor operator()(const Tensor& x);
  // Called with every output of this module (moco inspect records them; a module used twice,
  // like a block's ReLU, reports each call).
  std::function<void(const Tensor&)> output_hook;

  void train(bool training = true);  // the whole subtree
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Recursive, in PyTorch's order.
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  // Every module of the tree with its path; the root is "" (as PyTorch's named_modules()).
  std::vector<std::pair<std::string, Module*>> named_modules();
  NamedTensors state_dict() const;  // parameters and buffers, detached

  // Copies the values of `state` (any dtype/device; converted) into this tree. With strict, any
  // missing, unexpected or mis-shaped key is an error that lists them all and changes nothing;
  // without, the keys that match are loaded and the others are returned as the error message
  // would list them ("" when everything matched).
  std::string load_state_dict(const NamedTensors& state, bool strict = true);

  // Moves every parameter and buffer (keeping the flat layout when there is one); to(DType)
  // converts the floating ones (f64 on the CPU is how the tests check against float64 references).
  void to(Device device);
  void to(DType dtype);
  // Gradients to zero: one fill of the flat gradient buffer, or each parameter's.
  void zero_grad();

  // One flat buffer for the tree's parameters and one for their gradients (see the header comment).
  void flatten_parameters();
  bool is_flat() const { return flat_params_.defined(); }
  const Tensor& flat_parameters() const { return flat_params_; }  // 1-D; undefined until flattened
  const Tensor& flat_gradients() const { return flat_grads_; }

  // The child called `name`; throws when there is none.
  Module& child(const std::string& name) const;
  std::shared_ptr<Module> child_ptr(const std::string& name) const;

 protected:
  // `slot` must be a field of this module, alive as long as the module.
  void register_parameter(std::string name, Tensor* slot);
  // A host buffer stays on the CPU when the module moves (num_batches_tracked: a counter the host
  // increments); it still appears in state_dict.
  void register_buffer(std::string name, Tensor* slot, bool host = false);
  void register_module(std::string name, std::shared_ptr<Module> module);
  // Swaps the child `name` for another (a replaceable head); the name and position stay.
  void replace_module(const std::string& name, std::shared_ptr<Module> module);
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 private:
  struct Slot {
    std::string name;
    Tensor* tensor;
    bool host = false;
  };
  // Full paths of every parameter (or buffer) slot of the subtree, in PyTorch's order.
  void collect(const std::string& prefix, bool parameters, bool buffers, std::vector<Slot>& out) const;
  // Points every parameter slot at its view of flat_params_ (and its gradient at flat_grads_),
  // copying the current values in first when asked.
  void bind_flat_views(bool copy_values);
  // Replaces every parameter and buffer by convert(it); host buffers only when asked.
  void move_tensors(const std::function<Tensor(const Tensor&)>& convert, bool host_buffers);

  bool training_ = true;
  std::vector<Slot> parameters_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  Tensor flat_params_, flat_grads_;  // root only, after flatten_parameters()
};

}  // namespace engine::nn
