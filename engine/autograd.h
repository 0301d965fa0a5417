// autograd.h - reverse-mode automatic differentiation, readable in one sitting.
//
// Recording. An op whose inputs require grad (and GradMode is on) creates a Node: a subclass that
// holds the op's saved context as plain fields (the tensors and numbers backward needs) and a
// hand-written backward(). record() attaches the node to the op's output, which then requires grad.
//
//   struct MulBackward : Node {              // out = a * b
//     Tensor a, b;                           // saved context
//     std::vector<Tensor> backward(const Tensor& dout) override { return {dout * b, dout * a}; }
//     void release_saved() override { a = Tensor(); b = Tensor(); }
//   };
//
// Walking. Tensor::backward() sorts the graph by depth-first search from the output (inputs
// before users), then walks it in reverse: each node receives the sum of the gradients of all its
// users, computes its inputs' gradients, and passes them on. Leaves add (+=) what reaches them to
// grad(), in place when grad() is contiguous (so a gradient set to a view of a flat buffer stays
// that view); their grad-ready hooks fire once the leaf's gradient is final for this backward.
// Without retain_graph, each node frees its saved context as soon as it has run; walking it again
// is an error that says so.
//
// Backward runs with GradMode off: gradients of gradients are not recorded.
#pragma once

#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace engine {

struct Node {
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // d(loss)/d(input) for each input, in the order given to record(); an entry may be undefined
  // for an input that needs no gradient.
  virtual std::vector<Tensor> backward(const Tensor& dout) = 0;
  // Frees the saved context after backward has run (unless the graph is retained).
  virtual void release_saved() {}

  // Whether input k needs a gradient (backward may skip computing the others).
  bool needs_input_grad(size_t k) const { return inputs[k] != nullptr; }

  // Filled by record():
  std::vector<std::shared_ptr<AutogradMeta>> inputs;  // null where the input needs no gradient
  std::vector<Shape> input_shapes;                     // to check what backward returns
  bool released = false;
};

struct AutogradMeta {
  bool requires_grad = true;
  std::shared_ptr<Node> grad_fn;  // the op that produced this tensor; null for a leaf
  Tensor grad;                    // leaves only: the accumulated gradient
  std::vector<GradReadyHook> grad_ready_hooks;
};

// Whether ops record nodes; thread-local, on by default.
class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool enabled);
};

// Turns recording off for its scope (evaluation, optimizer steps, the momentum update).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

namespace autograd {

// True when GradMode is on and any input requires grad: the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
// Attaches `node` (with its saved context already filled) to `output` and links it to `inputs`.
void record(std::shared_ptr<Node> node, Tensor& output, std::initializer_list<const Tensor*> inputs);

}  // namespace autograd

}  // namespace engine
