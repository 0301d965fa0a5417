// elementwise_binary.cpp - checks, dispatch and autograd for add, sub, mul, div.
#include "ops/elementwise_binary.h"

#include <optional>

#include "engine/autograd.h"
#include "ops/elementwise_unary.h"
#include "ops/reduce_dim.h"

namespace engine {

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
  }
  return "binary";
}

Shape without_leading_ones(const Shape& shape) {
  size_t first = 0;
  while (first < shape.size() && shape[first] == 1) ++first;
  return Shape(shape.begin() + first, shape.end());
}

// The output shape of a (op) b under leading-dim broadcasting, or an error that says why not.
Shape broadcast_shape(const Tensor& a, const Tensor& b, const char* name) {
  const Shape sa = without_leading_ones(a.shape()), sb = without_leading_ones(b.shape());
  const Shape& longer = sa.size() >= sb.size() ? sa : sb;
  const Shape& shorter = sa.size() >= sb.size() ? sb : sa;
  ENGINE_CHECK(std::equal(shorter.rbegin(), shorter.rend(), longer.rbegin()),
               "{}: shapes {} and {} do not broadcast; expected equal shapes or one that ends the other "
               "(as (C) ends (N, C)): broadcasting runs over leading dims only",
               name, shape_str(a.shape()), shape_str(b.shape()));
  if (a.numel() != b.numel()) return a.numel() > b.numel() ? a.shape() : b.shape();
  return a.dim() >= b.dim() ? a.shape() : b.shape();
}

void check_binary_operands(const Tensor& a, const Tensor& b, const char* name) {
  check_defined(a, name, "a");
  check_defined(b, name, "b");
  check_same_device(a, b, name);
  check_same_dtype(a, b, name);
}

// The dense format x and y share, NCHW first (a tensor with C = 1 or H = W = 1 is dense in both).
std::optional<MemoryFormat> shared_dense_format(const Tensor& x, const Tensor& y) {
  for (const MemoryFormat format : {MemoryFormat::NCHW, MemoryFormat::NHWC})
    if (x.is_contiguous(format) && y.is_contiguous(format)) return format;
  return std::nullopt;
}

bool is_dense(const Tensor& x) { return x.is_contiguous(x.memory_format()); }

// a and b (detached) laid out so the flat contract applies, and the format of the output.
struct FlatOperands {
  Tensor a, b;
  MemoryFormat format = MemoryFormat::NCHW;
};

// The layout rule of the header: equal shapes run in a format the operands share, copying at most
// one of them; broadcasting is row-major.
FlatOperands flat_operands(const Tensor& a, const Tensor& b) {
  const Tensor ad = a.detach(), bd = b.detach();
  if (a.shape() != b.shape()) return {ad.contiguous(), bd.contiguous(), MemoryFormat::NCHW};
  if (const auto shared = shared_dense_format(a, b)) return {ad, bd, *shared};
  // Different layouts: one copy, of b into a's format (of a into b's when a is a strided view).
  const MemoryFormat format =
      is_dense(a) ? a.memory_format() : (is_dense(b) ? b.memory_format() : MemoryFormat::NCHW);
  return {ad.contiguous(format), bd.contiguous(format), format};
}

// out = a (op) b on data laid out by flat_operands; out may be a itself.
void binary_dispatch(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  dispatch_elementwise(out.dtype(), name, [&]<typename T>() {
    if (out.device().is_cpu()) {
      binary_forward_cpu<T>(op, out.data<T>(), a.data<T>(), a.numel(), b.data<T>(), b.numel(), out.numel());
    } else {
      ENGINE_DISPATCH_CUDA(out.device(), name,
                           binary_forward_cuda<T>(out.device().index, op, out.data<T>(), a.data<T>(), a.numel(),
                                                  b.data<T>(), b.numel(), out.numel()));
    }
  });
}

struct BinaryBackward : Node {
  BinaryOp op = BinaryOp::Add;
  Shape a_shape, b_shape;
  Tensor a, b, out;  // saved: a and b for mul, b and out for div
  const char* name() const override {
    switch (op) {
      case BinaryOp::Add: return "AddBackward";
      case BinaryOp::Sub: return "SubBackward";
      case BinaryOp::Mul: return "MulBackward";
      case BinaryOp::Div: return "DivBackward";
    }
    return "BinaryBackward";
  }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor da, db;
    switch (op) {
      case BinaryOp::Add:
        if (needs_input_grad(0)) da = reduce_to(dout, a_shape);
        if (needs_input_grad(1)) db = reduce_to(dout, b_shape);
        break;
      case BinaryOp::Sub:
        if (needs_input_grad(0)) da = reduce_to(dout, a_shape);
        if (needs_input_grad(1)) db = reduce_to(mul_scalar(dout, -1.0), b_shape);
        break;
      case BinaryOp::Mul:
        if (needs_input_grad(0)) da = reduce_to(mul(dout, b), a_shape);
        if (needs_input_grad(1)) db = reduce_to(mul(dout, a), b_shape);
        break;
      case BinaryOp::Div: {
        const Tensor dout_over_b = div(dout, b);  // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(1/b) out
        if (needs_input_grad(0)) da = reduce_to(dout_over_b, a_shape);
        if (needs_input_grad(1)) db = reduce_to(mul_scalar(mul(dout_over_b, out), -1.0), b_shape);
        break;
      }
    }
    return {da, db};
  }
  void release_saved() override { a = b = out = Tensor(); }
};

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_binary_operands(a, b, name);
  const Shape out_shape = broadcast_shape(a, b, name);
  const FlatOperands flat = flat_operands(a, b);
  const Tensor &ac = flat.a, &bc = flat.b;
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device(), flat.format);
  binary_dispatch(op, out, ac, bc);
  if (autograd::needs_grad({&a, &b})) {
    auto node = std::make_shared<BinaryBackward>();
    node->op = op;
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    if (op == BinaryOp::Mul) node->a = ac;
    if (op == BinaryOp::Mul || op == BinaryOp::Div) node->b = bc;
    if (op == BinaryOp::Div) node->out = out.detach();
    autograd::record(node, out, {&a, &b});
  }
  return out;
}

Tensor& binary_inplace(BinaryOp op, Tensor& a, const Tensor& b) {
  const char* name = op == BinaryOp::Add ? "add_" : "mul_";
  check_binary_operands(a, b, name);
  check_inplace_allowed(a, name);
  ENGINE_CHECK(broadcast_shape(a, b, name) == a.shape(),
               "{}: the result of shape {} (with {}) does not fit in place into {}", name,
               shape_str(broadcast_shape(a, b, name)), shape_str(b.shape()), shape_str(a.shape()));
  // flat.a is a itself when a's layout already suits the flat contract, else a copy of a: the
  // result is computed in it and copied back.
  const FlatOperands flat = flat_operands(a, b);
  binary_dispatch(op, flat.a, flat.a, flat.b);
  if (flat.a.storage() != a.storage()) a.copy_(flat.a);
  return a;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor& add_(Tensor& a, const Tensor& b) { return binary_inplace(BinaryOp::Add, a, b); }

Tensor reduce_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t n = shape_numel(shape);
  if (n == 0 || g.numel() == 0) return Tensor::zeros(shape, g.dtype(), g.device());
  // sum takes f32 and f64: a bf16 gradient is summed in f32 and rounded once.
  if (g.dtype() == DType::bf16) return sum(g.reshape({-1, n}).to(DType::f32), 0).reshape(shape).to(DType::bf16);
  return sum(g.reshape({-1, n}), 0).reshape(shape);
}

}  // namespace engine
