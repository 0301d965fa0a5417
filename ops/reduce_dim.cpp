// reduce_dim.cpp - checks, dispatch and autograd for sum and mean over a dim.
#include "ops/reduce_dim.h"

#include "engine/autograd.h"

namespace engine {

namespace {

struct ReduceGeometry {
  int64_t O = 1, D = 1, I = 1;
  Shape out_shape;
};

ReduceGeometry reduce_geometry(const Tensor& x, int64_t dim, bool keepdim, const char* name) {
  const int64_t nd = x.dim();
  ENGINE_CHECK(nd > 0, "{}: cannot reduce a dim of a 0-dim tensor; it already holds one value", name);
  const int64_t d = dim < 0 ? dim + nd : dim;
  ENGINE_CHECK(d >= 0 && d < nd, "{}: dim {} is out of range for a {}-D tensor {}", name, dim, nd, x.str());
  ReduceGeometry g;
  for (int64_t k = 0; k < nd; ++k) {
    if (k < d) g.O *= x.size(k);
    if (k > d) g.I *= x.size(k);
    if (k != d || keepdim) g.out_shape.push_back(k == d ? 1 : x.size(k));
  }
  g.D = x.size(d);
  return g;
}

struct ReduceBackward : Node {
  ReduceOp op = ReduceOp::Sum;
  Shape input_shape;
  int64_t O = 1, D = 1, I = 1;
  const char* name() const override { return op == ReduceOp::Sum ? "SumBackward" : "MeanBackward"; }
  std::vector<Tensor> backward(const Tensor& dout_) override {
    const Tensor dout = dout_.contiguous();
    Tensor dx = Tensor::empty(input_shape, dout.dtype(), dout.device());
    dispatch_float(dout.dtype(), name(), [&]<typename T>() {
      if (dout.device().is_cpu()) {
        reduce_dim_backward_cpu<T>(op, dx.data<T>(), dout.data<T>(), O, D, I);
      } else {
        ENGINE_DISPATCH_CUDA(dout.device(), name(),
                             reduce_dim_backward_cuda<T>(dout.device().index, op, dx.data<T>(), dout.data<T>(), O, D, I));
      }
    });
    return {dx};
  }
};

Tensor reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim) {
  const char* name = op == ReduceOp::Sum ? "sum" : "mean";
  check_defined(x, name, "x");
  const ReduceGeometry g = reduce_geometry(x, dim, keepdim, name);
  const Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(g.out_shape, x.dtype(), x.device());
  dispatch_float(x.dtype(), name, [&]<typename T>() {
    if (x.device().is_cpu()) {
      reduce_dim_forward_cpu<T>(op, out.data<T>(), xc.data<T>(), g.O, g.D, g.I);
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), name,
                           reduce_dim_forward_cuda<T>(x.device().index, op, out.data<T>(), xc.data<T>(), g.O, g.D, g.I));
    }
  });
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<ReduceBackward>();
    node->op = op;
    node->input_shape = x.shape();
    node->O = g.O;
    node->D = g.D;
    node->I = g.I;
    autograd::record(node, out, {&x});
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, int64_t dim, bool keepdim) { return reduce(ReduceOp::Sum, x, dim, keepdim); }
Tensor mean(const Tensor& x, int64_t dim, bool keepdim) { return reduce(ReduceOp::Mean, x, dim, keepdim); }
Tensor sum(const Tensor& x) { return sum(x.reshape({-1}), 0); }
Tensor mean(const Tensor& x) { return mean(x.reshape({-1}), 0); }

}  // namespace engine
