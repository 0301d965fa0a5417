// linear.cpp - linear as matmul (weight transposed through the GEMM flag) plus a broadcast bias.
#include "ops/linear.h"

#include "ops/elementwise_binary.h"
#include "ops/matmul.h"

namespace engine {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(x, "linear", "x");
  check_defined(weight, "linear", "weight");
  ENGINE_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1),
               "linear: expected x (N, in) and weight (out, in) with the same 'in', found x {} and weight {}", x.str(),
               weight.str());
  const Tensor y = matmul(x, weight, false, true);  // y: (N, out)
  if (!bias.defined()) return y;
  ENGINE_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias must be ({}), found {}",
               weight.size(0), bias.str());
  return add(y, bias);
}

}  // namespace engine
