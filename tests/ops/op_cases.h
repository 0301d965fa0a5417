// op_cases.h - one conformance case per (op, situation): its inputs, how to run it, tolerances.
// test_op_conformance.cpp runs every case in every mode; bench/ops reuses the op names.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tests/common/test_helpers.h"

namespace engine::testing {

struct OpCase {
  std::string op;     // a name from ops/op_list.def
  std::string label;  // what this case exercises, e.g. "broadcast_leading"
  std::vector<InputSpec> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> run;
  // float64 finite differences on the CPU reference: relative tolerance (see gradcheck()).
  double grad_tol = 1e-6;
  // CUDA f32 against CPU f32, forward and backward: |cuda - cpu| <= atol + rtol |cpu|.
  // The default allows a few ulps of f32 (different rounding of exp/log, summation order).
  double cuda_atol = 1e-5, cuda_rtol = 1e-5;
  // CUDA with bf16 storage against the CPU in f32 on the same (bf16-rounded) inputs; 0 = the op
  // has no bf16 path. Each case that sets it says why its tolerance is what it is.
  double bf16_atol = 0, bf16_rtol = 0;
  // How many leading inputs the bf16 run stores as bf16; the rest stay f32 (parameters an op
  // keeps in f32 under bf16 activations). -1: every input.
  int bf16_inputs = -1;
  // False for in-place updates without a backward (momentum_update, sgd_step): GradCheck skips
  // them and CudaMatchesCpu compares the forward only.
  bool differentiable = true;
};

std::vector<OpCase> all_op_cases();

}  // namespace engine::testing

namespace engine::testing {
// How GoogleTest names a case in its output.
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.op << "_" << c.label; }
}  // namespace engine::testing
