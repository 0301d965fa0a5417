// elementwise_unary.cpp - checks, dispatch and autograd for relu, exp, log and the scalar ops.
#include "ops/elementwise_unary.h"

#include "engine/autograd.h"

namespace engine {

namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::AddScalar: return "add_scalar";
    case UnaryOp::MulScalar: return "mul_scalar";
  }
  return "unary";
}

void unary_dispatch(UnaryOp op, const Tensor& out, const Tensor& x, double scalar) {
  const char* name = unary_name(op);
  dispatch_elementwise(out.dtype(), name, [&]<typename T>() {
    const auto s = static_cast<ElementwiseCompute<T>>(scalar);
    if (out.device().is_cpu()) {
      unary_forward_cpu<T>(op, out.data<T>(), x.data<T>(), s, out.numel());
    } else {
      ENGINE_DISPATCH_CUDA(out.device(), name,
                           unary_forward_cuda<T>(out.device().index, op, out.data<T>(), x.data<T>(), s, out.numel()));
    }
  });
}

struct UnaryBackward : Node {
  UnaryOp op = UnaryOp::Relu;
  double scalar = 0.0;
  Tensor x, out;  // saved: out for relu and exp, x for log; dense in the forward's format
  const char* name() const override {
    switch (op) {
      case UnaryOp::Relu: return "ReluBackward";
      case UnaryOp::Exp: return "ExpBackward";
      case UnaryOp::Log: return "LogBackward";
      case UnaryOp::AddScalar: return "AddScalarBackward";
      case UnaryOp::MulScalar: return "MulScalarBackward";
    }
    return "UnaryBackward";
  }
  std::vector<Tensor> backward(const Tensor& dout_) override {
    // The kernel pairs dout[i] with saved[i], so dout takes the saved tensor's format; without a
    // saved tensor any dense format of dout will do.
    const Tensor& saved = out.defined() ? out : x;
    const MemoryFormat format = saved.defined() ? saved.memory_format() : dout_.memory_format();
    const Tensor dout = dout_.contiguous(format);
    Tensor dx = Tensor::empty(dout.shape(), dout.dtype(), dout.device(), format);
    dispatch_elementwise(dout.dtype(), name(), [&]<typename T>() {
      const T* xp = x.defined() ? x.data<T>() : nullptr;
      const T* op_out = out.defined() ? out.data<T>() : nullptr;
      const auto s = static_cast<ElementwiseCompute<T>>(scalar);
      if (dout.device().is_cpu()) {
        unary_backward_cpu<T>(op, dx.data<T>(), dout.data<T>(), xp, op_out, s, dout.numel());
      } else {
        ENGINE_DISPATCH_CUDA(dout.device(), name(),
                             unary_backward_cuda<T>(dout.device().index, op, dx.data<T>(), dout.data<T>(), xp,
                                                    op_out, s, dout.numel()));
      }
    });
    return {dx};
  }
  void release_saved() override { x = out = Tensor(); }
};

Tensor unary(UnaryOp op, const Tensor& x, double scalar) {
  const char* name = unary_name(op);
  check_defined(x, name, "x");
  // Dense in its own format (NCHW or NHWC): used as it is; any other view becomes row-major.
  const MemoryFormat format = x.is_contiguous(x.memory_format()) ? x.memory_format() : MemoryFormat::NCHW;
  const Tensor xc = x.detach().contiguous(format);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device(), format);
  unary_dispatch(op, out, xc, scalar);
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<UnaryBackward>();
    node->op = op;
    node->scalar = scalar;
    if (op == UnaryOp::Relu || op == UnaryOp::Exp) node->out = out.detach();
    if (op == UnaryOp::Log) node->x = xc;
    autograd::record(node, out, {&x});
  }
  return out;
}

}  // namespace

Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x, 0.0); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x, 0.0); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x, 0.0); }
Tensor add_scalar(const Tensor& x, double s) { return unary(UnaryOp::AddScalar, x, s); }
Tensor mul_scalar(const Tensor& x, double s) { return unary(UnaryOp::MulScalar, x, s); }

}  // namespace engine
