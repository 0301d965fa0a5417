// l2_normalize.cpp - checks, dispatch and autograd for l2_normalize.
#include "ops/l2_normalize.h"

#include "engine/autograd.h"

namespace engine {

namespace {

struct L2NormalizeBackward : Node {
  Tensor y, norm;  // saved: the output and the unclamped row norms
  int64_t rows = 0, dim = 0;
  double eps = 0.0;
  const char* name() const override { return "L2NormalizeBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor dy = dout.contiguous();
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    dispatch_float(y.dtype(), "l2_normalize backward", [&]<typename T>() {
      if (y.device().is_cpu()) {
        l2_normalize_backward_cpu<T>(dx.data<T>(), dy.data<T>(), y.data<T>(), norm.data<T>(), rows, dim, eps);
      } else {
        ENGINE_DISPATCH_CUDA(y.device(), "l2_normalize backward",
                             l2_normalize_backward_cuda<T>(y.device().index, dx.data<T>(), dy.data<T>(), y.data<T>(),
                                                           norm.data<T>(), rows, dim, eps));
      }
    });
    return {dx};
  }
  void release_saved() override { y = norm = Tensor(); }
};

}  // namespace

Tensor l2_normalize(const Tensor& x, double eps) {
  check_defined(x, "l2_normalize", "x");
  ENGINE_CHECK(x.dim() == 1 || x.dim() == 2,
               "l2_normalize: expected rows (N, D) or one row (D,), found {}; reshape to (N, D) first", x.str());
  ENGINE_CHECK(eps > 0.0, "l2_normalize: eps must be positive (it bounds the divisor away from zero), found {}", eps);
  const int64_t rows = x.dim() == 2 ? x.size(0) : 1, dim = x.size(-1);
  const Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor norm = Tensor::empty({rows}, x.dtype(), x.device());
  dispatch_float(x.dtype(), "l2_normalize", [&]<typename T>() {
    if (x.device().is_cpu()) {
      l2_normalize_forward_cpu<T>(y.data<T>(), norm.data<T>(), xc.data<T>(), rows, dim, eps);
    } else {
      ENGINE_DISPATCH_CUDA(x.device(), "l2_normalize",
                           l2_normalize_forward_cuda<T>(x.device().index, y.data<T>(), norm.data<T>(), xc.data<T>(),
                                                        rows, dim, eps));
    }
  });
  if (autograd::needs_grad({&x})) {
    auto node = std::make_shared<L2NormalizeBackward>();
    node->y = y.detach();
    node->norm = norm;
    node->rows = rows;
    node->dim = dim;
    node->eps = eps;
    autograd::record(node, y, {&x});
  }
  return y;
}

}  // namespace engine
