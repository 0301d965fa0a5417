// test_op_conformance.cpp - the shared op test: every case of op_cases.cpp, in every mode.
//   GradCheck:     the CPU reference's gradients against float64 central finite differences;
//   CudaMatchesCpu: the CUDA forward and backward against the CPU reference in f32 (skips without
//                   a GPU; the forward only for a case that is not differentiable);
//   CudaBf16MatchesCpu, CpuBf16MatchesCpu: bf16 storage on each backend against the CPU in f32 on
//                   the same bf16-rounded inputs, within the case's stated bf16 tolerance;
//   Coverage:      every op of ops/op_list.def has at least one case.
#include <gtest/gtest.h>

#include <set>

#include "engine/autograd.h"
#include "ops/op_registry.h"
#include "tests/ops/op_cases.h"

namespace engine::testing {
namespace {

std::vector<Tensor> make_inputs(const OpCase& c, DType dtype, Device device) {
  std::vector<Tensor> inputs;
  for (size_t k = 0; k < c.inputs.size(); ++k) inputs.push_back(make_input(c.inputs[k], 100 + k, dtype, device));
  return inputs;
}

class OpConformance : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpConformance, GradCheck) {
  const OpCase& c = GetParam();
  if (!c.differentiable) GTEST_SKIP() << c.op << " has no gradient: its values are checked by hand in its own test file";
  EXPECT_TRUE(gradcheck(c.run, make_inputs(c, DType::f64, Device::cpu()), 1e-6, c.grad_tol));
}

TEST_P(OpConformance, CudaMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const OpCase& c = GetParam();
  std::vector<Tensor> cpu = make_inputs(c, DType::f32, Device::cpu());
  std::vector<Tensor> gpu = make_inputs(c, DType::f32, Device::cuda());
  for (Tensor& x : cpu) x.requires_grad_(c.differentiable);
  for (Tensor& x : gpu) x.requires_grad_(c.differentiable);
  const Tensor out_cpu = c.run(cpu), out_gpu = c.run(gpu);
  ASSERT_EQ(out_gpu.device(), Device::cuda());
  EXPECT_TRUE(all_close(out_gpu, out_cpu, c.cuda_atol, c.cuda_rtol)) << "forward";
  if (!c.differentiable) return;

  Tensor seed = Tensor::empty(out_cpu.shape(), DType::f32);
  Generator gen(11, 0x5EED);
  uniform_(seed, gen, -1.0, 1.0);
  out_cpu.backward(seed);
  out_gpu.backward(seed.to(Device::cuda()));
  for (size_t k = 0; k < cpu.size(); ++k)
    EXPECT_TRUE(all_close(gpu[k].grad(), cpu[k].grad(), c.cuda_atol, c.cuda_rtol)) << "gradient of input " << k;
}

// bf16 storage on `device` against the CPU in f32 on the same (bf16-rounded) inputs: both sides see
// the same values, so the difference is the op's own rounding of its outputs (and gradients) to bf16.
void check_bf16_against_f32(const OpCase& c, Device device) {
  std::vector<Tensor> bf16_side, f32_side;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const bool bf16 = c.bf16_inputs < 0 || static_cast<int>(k) < c.bf16_inputs;
    bf16_side.push_back(make_input(c.inputs[k], 100 + k, bf16 ? DType::bf16 : DType::f32, device));
    f32_side.push_back(bf16_side[k].to(Device::cpu()).to(DType::f32));
  }
  for (Tensor& x : f32_side) x.requires_grad_(c.differentiable);
  for (Tensor& x : bf16_side) x.requires_grad_(c.differentiable);
  const Tensor out_f32 = c.run(f32_side), out_bf16 = c.run(bf16_side);
  EXPECT_EQ(out_bf16.device(), device);
  EXPECT_TRUE(all_close(out_bf16.to(DType::f32), out_f32, c.bf16_atol, c.bf16_rtol)) << "forward";
  if (!c.differentiable) return;

  Tensor seed = Tensor::empty(out_f32.shape(), DType::f32);
  Generator gen(11, 0x5EED);
  uniform_(seed, gen, -1.0, 1.0);
  seed = seed.to(DType::bf16).to(DType::f32);
  out_f32.backward(seed);
  out_bf16.backward(seed.to(out_bf16.dtype()).to(device));
  for (size_t k = 0; k < f32_side.size(); ++k) {
    ASSERT_TRUE(bf16_side[k].grad().defined()) << "no gradient reached input " << k;
    EXPECT_EQ(bf16_side[k].grad().dtype(), bf16_side[k].dtype()) << "gradient of input " << k;
    EXPECT_TRUE(all_close(bf16_side[k].grad().to(DType::f32), f32_side[k].grad(), c.bf16_atol, c.bf16_rtol))
        << "gradient of input " << k;
  }
}

TEST_P(OpConformance, CudaBf16MatchesCpu) {
  const OpCase& c = GetParam();
  if (c.bf16_atol == 0) GTEST_SKIP() << c.op << " has no bf16 path";
  SKIP_WITHOUT_CUDA();
  check_bf16_against_f32(c, Device::cuda());
}

// The CPU's bf16 mode (ops/cpu_bf16.h) rounds where the CUDA kernels do, so the same tolerance holds.
TEST_P(OpConformance, CpuBf16MatchesCpu) {
  const OpCase& c = GetParam();
  if (c.bf16_atol == 0) GTEST_SKIP() << c.op << " has no bf16 path";
  check_bf16_against_f32(c, Device::cpu());
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpConformance, ::testing::ValuesIn(all_op_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) {
                           return info.param.op + "_" + info.param.label;
                         });

TEST(OpConformanceCoverage, EveryOpHasACase) {
  std::set<std::string> covered;
  for (const OpCase& c : all_op_cases()) {
    covered.insert(c.op);
    bool known = false;
    for (std::string_view name : kOpNames) known |= name == c.op;
    EXPECT_TRUE(known) << "case " << c.op << "_" << c.label << " names an op missing from ops/op_list.def";
  }
  for (std::string_view name : kOpNames)
    EXPECT_TRUE(covered.count(std::string(name))) << "op '" << name << "' has no conformance case in tests/ops/op_cases.cpp";
}

}  // namespace
}  // namespace engine::testing
