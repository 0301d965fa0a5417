// matmul.cpp - checks, layout folding, dispatch and autograd for matmul.
#include "ops/matmul.h"

#include <limits>

#include "engine/autograd.h"

namespace engine {

namespace {

// A 2-D operand as GEMM sees it: a row-major matrix with a leading dimension and a transpose flag.
struct GemmOperand {
  Tensor t;
  bool trans;
  int64_t ld;
};

// Row-major views are used as they are; a transposed view (strides (1, s)) is the row-major
// transpose of its storage, so it flips the flag instead of being copied; anything else is copied.
GemmOperand gemm_operand(const Tensor& x, bool trans) {
  constexpr int64_t kMaxLd = std::numeric_limits<int>::max();  // BLAS leading dimensions are 32-bit
  const int64_t rows = x.size(0), cols = x.size(1);
  if (x.stride(1) == 1 && x.stride(0) >= std::max<int64_t>(cols, 1) && x.stride(0) <= kMaxLd)
    return {x, trans, x.stride(0)};
  if (x.stride(0) == 1 && x.stride(1) >= std::max<int64_t>(rows, 1) && x.stride(1) <= kMaxLd)
    return {x, !trans, x.stride(1)};
  return {x.contiguous(), trans, std::max<int64_t>(cols, 1)};
}

struct MatmulBackward : Node {
  Tensor a, b;  // saved operands (views as given)
  bool trans_a = false, trans_b = false;
  const char* name() const override { return "MatmulBackward"; }
  std::vector<Tensor> backward(const Tensor& dc) override {
    Tensor da, db;
    if (needs_input_grad(0)) da = trans_a ? matmul(b, dc, trans_b, true) : matmul(dc, b, false, !trans_b);
    if (needs_input_grad(1)) db = trans_b ? matmul(dc, a, true, trans_a) : matmul(a, dc, !trans_a, false);
    return {da, db};
  }
  void release_saved() override { a = b = Tensor(); }
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_defined(a, "matmul", "a");
  check_defined(b, "matmul", "b");
  ENGINE_CHECK(a.dim() == 2 && b.dim() == 2, "matmul: expected two 2-D matrices, found {} and {}", a.str(), b.str());
  check_same_device(a, b, "matmul");
  check_same_dtype(a, b, "matmul");
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t K2 = trans_b ? b.size(1) : b.size(0), N = trans_b ? b.size(0) : b.size(1);
  ENGINE_CHECK(K == K2,
               "matmul: inner dimensions differ: op(a) is ({}, {}) and op(b) is ({}, {}) (a {}{}, b {}{})", M, K, K2,
               N, shape_str(a.shape()), trans_a ? " transposed" : "", shape_str(b.shape()),
               trans_b ? " transposed" : "");
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  ENGINE_CHECK(M <= kIntMax && N <= kIntMax && K <= kIntMax,
               "matmul: dimensions ({}, {}, {}) exceed the 32-bit sizes BLAS accepts", M, N, K);

  const GemmOperand ga = gemm_operand(a.detach(), trans_a), gb = gemm_operand(b.detach(), trans_b);
  Tensor c = Tensor::empty({M, N}, a.dtype(), a.device());
  if (K == 0) {
    c.zero_();  // an empty sum
  } else {
    dispatch_float(a.dtype(), "matmul", [&]<typename T>() {
      const T* ap = ga.t.data<T>();
      const T* bp = gb.t.data<T>();
      T* cp = c.data<T>();
      const int64_t ldc = std::max<int64_t>(N, 1);
      if (c.device().is_cpu()) {
        matmul_forward_cpu_best<T>(cp, ap, bp, M, N, K, ga.trans, gb.trans, ga.ld, gb.ld, ldc);
      } else {
        ENGINE_DISPATCH_CUDA(c.device(), "matmul",
                             matmul_forward_cuda<T>(c.device().index, cp, ap, bp, M, N, K, ga.trans, gb.trans, ga.ld,
                                                    gb.ld, ldc));
      }
    });
  }
  if (autograd::needs_grad({&a, &b})) {
    auto node = std::make_shared<MatmulBackward>();
    node->a = a.detach();
    node->b = b.detach();
    node->trans_a = trans_a;
    node->trans_b = trans_b;
    autograd::record(node, c, {&a, &b});
  }
  return c;
}

}  // namespace engine
