// test_batchnorm_fused.cpp - batchnorm2d_relu and batchnorm2d_add_relu (ops/batchnorm2d.h):
//   - on the CPU in float64 (and f32) against the unfused composition relu(batchnorm2d(x)) and
//     relu(add(batchnorm2d(x), r)): forward, every gradient (d_residual too) and the running
//     statistics, training with 2 ghost groups and eval, NCHW and NHWC, to the bit (the CPU
//     reference rounds where the composition does);
//   - the mask is y > 0, relu(NaN) stays NaN, by hand-computed values;
//   - the CPU's bf16 mode (bf16 activations, f32 parameters) for batchnorm2d and both fused ops;
//   - CUDA against the CPU, f32 and bf16, at the small twins of ResNet-50's shapes that
//     test_batchnorm_cuda.cpp uses (same kernels, same paths), and CUDA fused against CUDA unfused.
// The conformance suite (tests/ops/op_cases.cpp) adds the finite-difference checks; the last test
// here checks that its fused cases keep relu's input off the kink.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "ops/ops.h"
#include "tests/common/test_helpers.h"
#include "tests/ops/op_cases.h"

namespace engine::testing {
namespace {

enum class Fused { Relu, AddRelu };

struct BnConfig {
  Shape shape;
  bool x_nhwc = false, residual_nhwc = false;
  bool training = true;
  int64_t groups = 1;
  GhostRunningStats rule = GhostRunningStats::FirstGroup;
};

// One step's results: forward, gradients of a fixed dy, running statistics afterwards.
struct Step {
  Tensor y, dx, d_residual, dgamma, dbeta, running_mean, running_var;
};

// Inputs in `act` (x, residual, dy) and `param` (gamma, beta, statistics) on `device`, from fixed
// seeds: the same values whatever the types (make_input), so runs in different types agree up to
// their rounding. With `round_to_bf16` the activations are rounded to bf16 first and then held in
// `act` (the CPU side of a bf16 comparison).
struct Inputs {
  Tensor x, residual, gamma, beta, running_mean, running_var, dy;
};

Inputs make_inputs(const BnConfig& s, DType act, DType param, Device device, bool round_to_bf16 = false) {
  const int64_t C = s.shape[1];
  const auto activation = [&](const InputSpec& spec, uint64_t seed) {
    if (!round_to_bf16) return make_input(spec, seed, act, device);
    return make_input(spec, seed, DType::bf16, device).to(act);
  };
  Inputs in;
  in.x = activation({s.shape, -0.5, 2.5, s.x_nhwc ? Layout::ChannelsLast : Layout::Contiguous}, 41);
  in.residual = activation({s.shape, -1.0, 1.0, s.residual_nhwc ? Layout::ChannelsLast : Layout::Contiguous}, 42);
  in.dy = activation({s.shape}, 43);
  in.gamma = make_input({{C}, 0.5, 1.5}, 44, param, device);
  in.beta = make_input({{C}, -0.5, 0.5}, 45, param, device);
  in.running_mean = make_input({{C}, -0.2, 0.2}, 46, param, device);
  in.running_var = make_input({{C}, 0.5, 2.0}, 47, param, device);
  return in;
}

BatchNormOptions options(const BnConfig& s) {
  BatchNormOptions opt;
  opt.training = s.training;
  opt.groups = s.groups;
  opt.running_stats = s.rule;
  return opt;
}

// Which activations want a gradient: both, or one alone (the backward then skips dx, or
// d_residual, or both, and must still give the rest).
enum class Wants { Both, XOnly, ResidualOnly };

// fused: one op; otherwise the composition of batchnorm2d, add and relu.
Step run(Fused op, bool fused, const BnConfig& s, Inputs in, Wants wants = Wants::Both) {
  Tensor x = in.x.detach(), r = in.residual.detach(), gamma = in.gamma.detach(), beta = in.beta.detach();
  x.requires_grad_(wants != Wants::ResidualOnly);
  r.requires_grad_(wants != Wants::XOnly);
  gamma.requires_grad_(true);
  beta.requires_grad_(true);
  Step st;
  st.running_mean = in.running_mean.clone();
  st.running_var = in.running_var.clone();
  const BatchNormOptions opt = options(s);
  const bool add = op == Fused::AddRelu;
  if (fused) {
    st.y = add ? batchnorm2d_add_relu(x, r, gamma, beta, st.running_mean, st.running_var, opt)
               : batchnorm2d_relu(x, gamma, beta, st.running_mean, st.running_var, opt);
  } else {
    const Tensor z = batchnorm2d(x, gamma, beta, st.running_mean, st.running_var, opt);
    st.y = relu(add ? engine::add(z, r) : z);
  }
  st.y.backward(in.dy);
  st.dx = x.grad();
  st.d_residual = add && r.requires_grad() ? r.grad() : Tensor();
  st.dgamma = gamma.grad();
  st.dbeta = beta.grad();
  return st;
}

// Per element |a - b| <= atol + rtol |b|; values: y, dx, d_residual; sums: dgamma, dbeta.
struct Tolerances {
  double values_atol = 0, values_rtol = 0;
  double sums_atol = 0, sums_rtol = 0;
  double stats_tol = 0;
};

void expect_steps_match(const Step& a, const Step& b, const Tolerances& t) {
  const auto f32 = [](const Tensor& v) { return v.to(Device::cpu()).to(DType::f32); };
  const auto f64 = [](const Tensor& v) { return v.to(Device::cpu()).to(DType::f64); };
  const bool wide = a.y.dtype() == DType::f64 || b.y.dtype() == DType::f64;
  const auto same = [&](const Tensor& v) { return wide ? f64(v) : f32(v); };
  EXPECT_TRUE(all_close(same(a.y), same(b.y), t.values_atol, t.values_rtol)) << "y";
  ASSERT_EQ(a.dx.defined(), b.dx.defined());
  if (a.dx.defined()) EXPECT_TRUE(all_close(same(a.dx), same(b.dx), t.values_atol, t.values_rtol)) << "dx";
  ASSERT_EQ(a.d_residual.defined(), b.d_residual.defined());
  if (a.d_residual.defined()) {
    EXPECT_TRUE(all_close(same(a.d_residual), same(b.d_residual), t.values_atol, t.values_rtol)) << "d_residual";
  }
  EXPECT_TRUE(all_close(same(a.dgamma), same(b.dgamma), t.sums_atol, t.sums_rtol)) << "dgamma";
  EXPECT_TRUE(all_close(same(a.dbeta), same(b.dbeta), t.sums_atol, t.sums_rtol)) << "dbeta";
  EXPECT_TRUE(all_close(same(a.running_mean), same(b.running_mean), t.stats_tol, t.stats_tol)) << "running_mean";
  EXPECT_TRUE(all_close(same(a.running_var), same(b.running_var), t.stats_tol, t.stats_tol)) << "running_var";
}

int64_t count_zeros(const Tensor& t) {
  int64_t zeros = 0;
  for (double v : t.to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>()) zeros += v == 0.0;
  return zeros;
}

// The fixture's inputs must exercise the mask: some outputs clipped to 0, most not.
void expect_mask_exercised(const Step& s) {
  const int64_t zeros = count_zeros(s.y), n = s.y.numel();
  EXPECT_GT(zeros, n / 40) << "too few outputs clipped: the mask is barely tested";
  EXPECT_LT(zeros, n - n / 40) << "too many outputs clipped";
  // Where y is 0 the gradient reaching the residual must be 0, elsewhere it is dy.
  if (s.d_residual.defined()) {
    EXPECT_EQ(count_zeros(s.d_residual), zeros);
  }
}

const BnConfig kCpuConfigs[] = {
    {{6, 3, 5, 4}, false, false, true, 2},                              // train, 2 ghost groups, NCHW
    {{6, 3, 5, 4}, true, true, true, 2, GhostRunningStats::Average},    // NHWC, averaged statistics
    {{4, 5, 3, 3}, true, false, true, 2},                               // x NHWC, residual NCHW
    {{4, 3, 5, 4}, false, false, false},                                // eval NCHW
    {{4, 5, 3, 3}, true, true, false},                                  // eval NHWC
    {{4, 5, 3, 3}, false, true, false},                                 // eval, x NCHW, residual NHWC
};

TEST(BatchNormFused, CpuFloat64MatchesTheUnfusedCompositionToTheBit) {
  for (const BnConfig& s : kCpuConfigs)
    for (Fused op : {Fused::Relu, Fused::AddRelu}) {
      SCOPED_TRACE(fmt::format("{} {} x {} residual {} groups {}", op == Fused::Relu ? "relu" : "add_relu",
                               shape_str(s.shape), s.x_nhwc ? "NHWC" : "NCHW", s.residual_nhwc ? "NHWC" : "NCHW",
                               s.training ? s.groups : 0));
      const Inputs in = make_inputs(s, DType::f64, DType::f64, Device::cpu());
      const Step fused = run(op, true, s, in), unfused = run(op, false, s, in);
      EXPECT_EQ(fused.y.memory_format(), s.x_nhwc ? MemoryFormat::NHWC : MemoryFormat::NCHW) << "y takes x's layout";
      EXPECT_EQ(fused.y.dtype(), DType::f64);
      expect_steps_match(fused, unfused, {});
      expect_mask_exercised(fused);
      // The running statistics moved in training (and not in eval).
      EXPECT_EQ(static_cast<bool>(all_close(fused.running_mean, in.running_mean, 0, 0)), !s.training);
    }
}

TEST(BatchNormFused, CpuFloat32MatchesTheUnfusedCompositionToTheBit) {
  for (const BnConfig& s : {kCpuConfigs[0], kCpuConfigs[1], kCpuConfigs[5]})
    for (Fused op : {Fused::Relu, Fused::AddRelu}) {
      const Inputs in = make_inputs(s, DType::f32, DType::f32, Device::cpu());
      expect_steps_match(run(op, true, s, in), run(op, false, s, in), {});
    }
}

// Eval, one channel: running mean 0, running var 4, eps 0, gamma 2, beta 0, so bn(x) = x exactly.
TEST(BatchNormFused, MaskIsYPositiveWithHandComputedValues) {
  const Tensor x0 = Tensor::from_vector<double>({-1.0, 0.0, 2.0, 3.0}, {1, 1, 2, 2});
  const Tensor r0 = Tensor::from_vector<double>({0.5, 0.0, -2.0, 1.0}, {1, 1, 2, 2});
  Tensor x = x0.clone(), r = r0.clone();
  Tensor gamma = Tensor::from_vector<double>({2.0}, {1}), beta = Tensor::zeros({1}, DType::f64);
  Tensor rm = Tensor::zeros({1}, DType::f64), rv = Tensor::from_vector<double>({4.0}, {1});
  BatchNormOptions eval;
  eval.training = false;
  eval.eps = 0.0;
  x.requires_grad_(true);
  r.requires_grad_(true);
  gamma.requires_grad_(true);
  beta.requires_grad_(true);
  // bn(x) + r = (-0.5, 0, 0, 4): an exact 0 counts as clipped (PyTorch's relu gradient at 0).
  const Tensor y = batchnorm2d_add_relu(x, r, gamma, beta, rm, rv, eval);
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{0, 0, 0, 4}));
  y.backward(Tensor::ones({1, 1, 2, 2}, DType::f64));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 1}));  // gamma invstd dz = 2 * 0.5
  EXPECT_EQ(r.grad().to_vector<double>(), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(beta.grad().item(), 1.0);
  EXPECT_EQ(gamma.grad().item(), 1.5);  // xhat of the one unmasked value: 3 * 0.5

  Tensor x2 = x0.clone();
  x2.requires_grad_(true);
  const Tensor y2 = batchnorm2d_relu(x2, gamma.detach(), beta.detach(), rm, rv, eval);
  EXPECT_EQ(y2.to_vector<double>(), (std::vector<double>{0, 0, 2, 3}));
  y2.backward(Tensor::full({1, 1, 2, 2}, 3.0, DType::f64));
  EXPECT_EQ(x2.grad().to_vector<double>(), (std::vector<double>{0, 0, 3, 3}));
}

// relu(NaN) is NaN, as ops/elementwise_unary: a NaN in x (eval: only its own output) or in the
// residual comes through; the other outputs are unaffected.
void expect_nan_passes(Device device, DType dtype) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector<double>({nan, -5.0, 1.0, 2.0}, {1, 1, 2, 2}).to(dtype).to(device);
  const Tensor r = Tensor::from_vector<double>({0.0, 0.0, nan, 1.0}, {1, 1, 2, 2}).to(dtype).to(device);
  const DType param = dtype == DType::f64 ? DType::f64 : DType::f32;
  const Tensor gamma = Tensor::ones({1}, param, device), beta = Tensor::zeros({1}, param, device);
  const Tensor rm = Tensor::zeros({1}, param, device), rv = Tensor::ones({1}, param, device);
  BatchNormOptions eval;
  eval.training = false;
  eval.eps = 0.0;
  const std::vector<double> y1 = batchnorm2d_relu(x, gamma, beta, rm, rv, eval).to(DType::f64).to_vector<double>();
  EXPECT_TRUE(std::isnan(y1[0]));
  EXPECT_EQ(y1[1], 0.0);
  EXPECT_EQ(y1[2], 1.0);
  EXPECT_EQ(y1[3], 2.0);
  const std::vector<double> y2 =
      batchnorm2d_add_relu(x, r, gamma, beta, rm, rv, eval).to(DType::f64).to_vector<double>();
  EXPECT_TRUE(std::isnan(y2[0]));
  EXPECT_EQ(y2[1], 0.0);
  EXPECT_TRUE(std::isnan(y2[2]));
  EXPECT_EQ(y2[3], 3.0);
}

TEST(BatchNormFused, NanStaysNanInTheForward) {
  expect_nan_passes(Device::cpu(), DType::f64);
  expect_nan_passes(Device::cpu(), DType::f32);
  expect_nan_passes(Device::cpu(), DType::bf16);
}

TEST(BatchNormFused, RefusesAMismatchedResidual) {
  const BnConfig s{{2, 3, 4, 4}};
  const Inputs in = make_inputs(s, DType::f32, DType::f32, Device::cpu());
  const auto call = [&](const Tensor& r) {
    return error_of([&] { batchnorm2d_add_relu(in.x, r, in.gamma, in.beta, in.running_mean, in.running_var); });
  };
  EXPECT_NE(call(Tensor::zeros({2, 3, 4, 5}, DType::f32)).find("batchnorm2d_add_relu"), std::string::npos);
  EXPECT_NE(call(Tensor::zeros({2, 3, 4, 4}, DType::f64)).find("batchnorm2d_add_relu"), std::string::npos);
  EXPECT_NE(call(Tensor()).find("residual"), std::string::npos);
  EXPECT_EQ(call(in.residual), "(no error)");
}

// ---- the CPU's bf16 mode: bf16 activations, f32 parameters and statistics ----

// On the CPU a bf16 x runs the f32 reference on its values and rounds y (and, through the casts'
// backward, dx and d_residual) to bf16; dgamma, dbeta and the statistics stay f32. So the bf16 run
// equals the f32 run on the same values with those outputs rounded, to the bit.
TEST(BatchNormFused, CpuBf16ModeIsTheF32ReferenceRoundedWhereCudaRounds) {
  for (const BnConfig& s : {kCpuConfigs[1], kCpuConfigs[5]}) {
    for (int which = 0; which < 3; ++which) {
      const Inputs bf = make_inputs(s, DType::bf16, DType::f32, Device::cpu());
      const Inputs wide = make_inputs(s, DType::f32, DType::f32, Device::cpu(), true);
      Step a, b;
      if (which == 0) {  // plain batchnorm2d
        const auto plain = [&](const Inputs& in) {
          Tensor x = in.x.detach(), gamma = in.gamma.detach(), beta = in.beta.detach();
          x.requires_grad_(true);
          gamma.requires_grad_(true);
          beta.requires_grad_(true);
          Step st;
          st.running_mean = in.running_mean.clone();
          st.running_var = in.running_var.clone();
          st.y = batchnorm2d(x, gamma, beta, st.running_mean, st.running_var, options(s));
          st.y.backward(in.dy);
          st.dx = x.grad();
          st.dgamma = gamma.grad();
          st.dbeta = beta.grad();
          return st;
        };
        a = plain(bf);
        b = plain(wide);
      } else {
        const Fused op = which == 1 ? Fused::Relu : Fused::AddRelu;
        a = run(op, true, s, bf);
        b = run(op, true, s, wide);
      }
      SCOPED_TRACE(which);
      EXPECT_EQ(a.y.dtype(), DType::bf16);
      EXPECT_EQ(a.dx.dtype(), DType::bf16);
      if (a.d_residual.defined()) {
        EXPECT_EQ(a.d_residual.dtype(), DType::bf16);
      }
      EXPECT_EQ(a.dgamma.dtype(), DType::f32);
      EXPECT_EQ(a.running_mean.dtype(), DType::f32);
      EXPECT_EQ(a.y.memory_format(), s.x_nhwc ? MemoryFormat::NHWC : MemoryFormat::NCHW);
      const auto rounded = [](const Tensor& t) { return t.to(DType::bf16).to(DType::f32); };
      EXPECT_TRUE(all_close(a.y.to(DType::f32), rounded(b.y), 0, 0)) << "y";
      EXPECT_TRUE(all_close(a.dx.to(DType::f32), rounded(b.dx), 0, 0)) << "dx";
      if (a.d_residual.defined()) {
        EXPECT_TRUE(all_close(a.d_residual.to(DType::f32), rounded(b.d_residual), 0, 0)) << "d_residual";
      }
      EXPECT_TRUE(all_close(a.dgamma, b.dgamma, 0, 0)) << "dgamma";
      EXPECT_TRUE(all_close(a.dbeta, b.dbeta, 0, 0)) << "dbeta";
      EXPECT_TRUE(all_close(a.running_mean, b.running_mean, 0, 0)) << "running_mean";
      EXPECT_TRUE(all_close(a.running_var, b.running_var, 0, 0)) << "running_var";
    }
  }
}

// One dtype rule on both devices: parameters f32 under bf16 activations, else the activations'.
TEST(BatchNormFused, ParameterDtypeRuleIsTheSameForEveryOp) {
  const BnConfig s{{2, 3, 4, 4}};
  const Inputs bf = make_inputs(s, DType::bf16, DType::bf16, Device::cpu());
  const std::string e1 = error_of([&] { batchnorm2d(bf.x, bf.gamma, bf.beta, Tensor(), Tensor()); });
  EXPECT_NE(e1.find("gamma must be f32 for bf16 activations"), std::string::npos) << e1;
  const std::string e2 = error_of([&] { batchnorm2d_relu(bf.x, bf.gamma, bf.beta, Tensor(), Tensor()); });
  EXPECT_NE(e2.find("batchnorm2d_relu: gamma must be f32"), std::string::npos) << e2;
  const Inputs mixed = make_inputs(s, DType::f64, DType::f32, Device::cpu());
  const std::string e3 = error_of(
      [&] { batchnorm2d_add_relu(mixed.x, mixed.residual, mixed.gamma, mixed.beta, Tensor(), Tensor()); });
  EXPECT_NE(e3.find("gamma must be f64 for f64 activations"), std::string::npos) << e3;
  const Inputs ints = make_inputs(s, DType::f32, DType::f32, Device::cpu());
  const std::string e4 =
      error_of([&] { batchnorm2d(ints.x.to(DType::i32), ints.gamma, ints.beta, Tensor(), Tensor()); });
  EXPECT_NE(e4.find("x must be f32 or bf16 (or f64 on the CPU), found i32"), std::string::npos) << e4;
}

// The backward with only x, or only the residual, wanting a gradient (a frozen trunk's shortcut,
// or a shortcut from a constant): dgamma and dbeta and the one wanted gradient as the composition's.
TEST(BatchNormFused, OneActivationGradientAloneMatchesTheComposition) {
  for (const BnConfig& s : {kCpuConfigs[0], kCpuConfigs[1], kCpuConfigs[5]})
    for (Wants wants : {Wants::XOnly, Wants::ResidualOnly}) {
      SCOPED_TRACE(fmt::format("{} {}", shape_str(s.shape), wants == Wants::XOnly ? "x only" : "residual only"));
      const Inputs in = make_inputs(s, DType::f64, DType::f64, Device::cpu());
      const Step fused = run(Fused::AddRelu, true, s, in, wants), unfused = run(Fused::AddRelu, false, s, in, wants);
      EXPECT_EQ(fused.dx.defined(), wants == Wants::XOnly);
      EXPECT_EQ(fused.d_residual.defined(), wants == Wants::ResidualOnly);
      expect_steps_match(fused, unfused, {});
    }
}

// ---- CUDA ----

// The twins of ResNet-50's layer1 and last stage from test_batchnorm_cuda.cpp: the NCHW row
// kernel with split sums, the NHWC tile kernel with split sums, HW = 49; 4 ghost groups.
const BnConfig kCudaConfigs[] = {
    {{8, 3, 61, 59}, false, false, true, 4},
    {{8, 40, 23, 29}, true, true, true, 4},
    {{12, 40, 7, 7}, false, true, true, 4, GhostRunningStats::Average},  // residual NHWC, x NCHW
    {{12, 40, 7, 7}, true, true, false},                                  // eval
};

// CUDA f32 against the CPU f32: y, dx, d_residual as batchnorm2d's (1e-5: f32 arithmetic against
// double); dgamma and dbeta, sums over ~10^4 values of f32 terms on CUDA against double ones on the
// CPU: 1e-4 absolute, as test_batchnorm_cuda.cpp. The inputs keep relu's input off 0 by more than
// f32 ulps (the mask is the same on both sides: expect_mask_exercised and the values check it).
Tolerances cuda_f32_against_cpu() {
  Tolerances t;
  t.values_atol = t.values_rtol = 1e-5;
  t.sums_atol = 1e-4;
  t.sums_rtol = 1e-5;
  t.stats_tol = 1e-6;
  return t;
}

TEST(BatchNormFusedCuda, F32MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Tolerances t = cuda_f32_against_cpu();
  for (const BnConfig& s : kCudaConfigs)
    for (Fused op : {Fused::Relu, Fused::AddRelu}) {
      SCOPED_TRACE(fmt::format("{} {} {}", op == Fused::Relu ? "relu" : "add_relu", shape_str(s.shape),
                               s.training ? "train" : "eval"));
      const Step gpu = run(op, true, s, make_inputs(s, DType::f32, DType::f32, Device::cuda()));
      const Step cpu = run(op, true, s, make_inputs(s, DType::f32, DType::f32, Device::cpu()));
      EXPECT_EQ(gpu.y.device(), Device::cuda());
      EXPECT_EQ(gpu.y.memory_format(), s.x_nhwc ? MemoryFormat::NHWC : MemoryFormat::NCHW);
      expect_steps_match(gpu, cpu, t);
      expect_mask_exercised(gpu);
    }
}

// bf16 storage on CUDA against the CPU in f32 on the same bf16-rounded inputs (as the conformance
// suite's CudaBf16MatchesCpu): y, dx are rounded to bf16 on CUDA (2^-8 relative) with xhat up to
// ~3: 2e-2, as batchnorm2d; d_residual is dy or 0, exact. dgamma and dbeta: f32 on both sides from
// the same bf16 values of x and dy, apart by f32 terms against double ones: 1e-3 and 1e-4.
TEST(BatchNormFusedCuda, Bf16MatchesCpuOnTheSameRoundedInputs) {
  SKIP_WITHOUT_CUDA();
  Tolerances t;
  t.values_atol = t.values_rtol = 2e-2;
  t.sums_atol = 1e-3;
  t.sums_rtol = 1e-4;
  t.stats_tol = 1e-6;
  for (const BnConfig& s : kCudaConfigs)
    for (Fused op : {Fused::Relu, Fused::AddRelu}) {
      SCOPED_TRACE(fmt::format("{} {} {}", op == Fused::Relu ? "relu" : "add_relu", shape_str(s.shape),
                               s.training ? "train" : "eval"));
      const Step gpu = run(op, true, s, make_inputs(s, DType::bf16, DType::f32, Device::cuda()));
      const Step cpu = run(op, true, s, make_inputs(s, DType::f32, DType::f32, Device::cpu(), true));
      EXPECT_EQ(gpu.y.dtype(), DType::bf16);
      EXPECT_EQ(gpu.dx.dtype(), DType::bf16);
      EXPECT_EQ(gpu.dgamma.dtype(), DType::f32);
      expect_steps_match(gpu, cpu, t);
      if (gpu.d_residual.defined()) {
        EXPECT_TRUE(all_close(gpu.d_residual.to(Device::cpu()).to(DType::f32), cpu.d_residual, 0, 0))
            << "d_residual is dy masked: exact";
      }
    }
}

// On CUDA in f32 the fused kernels compute what the unfused launches compute (the same f32 value
// of bn(x), the add in f32, the same sums of dz in the same order): they agree to f32 rounding.
// 1e-6 relative is margin for a compiler's different contraction; no kink trouble, since both
// sides see the same pre-activations.
void expect_fused_matches_unfused_on_cuda(const BnConfig& s) {
  Tolerances t;
  t.values_atol = t.values_rtol = 1e-6;
  t.sums_atol = t.sums_rtol = 1e-6;
  t.stats_tol = 0;
  for (Fused op : {Fused::Relu, Fused::AddRelu}) {
    const Inputs in = make_inputs(s, DType::f32, DType::f32, Device::cuda());
    expect_steps_match(run(op, true, s, in), run(op, false, s, in), t);
  }
}

TEST(BatchNormFusedCuda, FusedMatchesUnfusedOnCuda) {
  SKIP_WITHOUT_CUDA();
  for (const BnConfig& s : kCudaConfigs) expect_fused_matches_unfused_on_cuda(s);
}

// The CUDA backward with dx not wanted (d_residual alone: the dx pass still runs for it) and with
// d_residual not wanted, against the CPU, at F32MatchesCpu's tolerances.
TEST(BatchNormFusedCuda, OneActivationGradientAloneMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Tolerances t = cuda_f32_against_cpu();
  for (const BnConfig& s : kCudaConfigs)
    for (Wants wants : {Wants::XOnly, Wants::ResidualOnly}) {
      SCOPED_TRACE(fmt::format("{} {}", shape_str(s.shape), wants == Wants::XOnly ? "x only" : "residual only"));
      const Step gpu = run(Fused::AddRelu, true, s, make_inputs(s, DType::f32, DType::f32, Device::cuda()), wants);
      const Step cpu = run(Fused::AddRelu, true, s, make_inputs(s, DType::f32, DType::f32, Device::cpu()), wants);
      EXPECT_EQ(gpu.d_residual.defined(), wants == Wants::ResidualOnly);
      expect_steps_match(gpu, cpu, t);
    }
}

TEST(BatchNormFusedCuda, NanStaysNanInTheForward) {
  SKIP_WITHOUT_CUDA();
  expect_nan_passes(Device::cuda(), DType::f32);
  expect_nan_passes(Device::cuda(), DType::bf16);
}

// ResNet-50's layer1 at batch 256 in 4 ghost groups, NHWC, and its last stage in NCHW: GPU only.
TEST(BatchNormFusedCudaRealSize, FusedMatchesUnfusedAtResNet50Shapes) {
  SKIP_WITHOUT_CUDA();
  SKIP_REAL_SIZE_ON_EMULATOR();
  expect_fused_matches_unfused_on_cuda({{256, 64, 56, 56}, true, true, true, 4});
  expect_fused_matches_unfused_on_cuda({{256, 2048, 7, 7}, false, true, true, 4});
}

// ---- the conformance cases ----

// The fused cases of op_cases.cpp must keep relu's input off the kink, where finite differences
// are meaningless and CPU and CUDA could disagree on the mask: shifting beta by -d and +d moves
// every pre-activation by exactly that, so the same count of clipped outputs under both means none
// lies within d of 0. d = 1e-4 is ~30 times the largest move of a pre-activation under the
// gradient check's steps of 1e-6 (|d pre / d input| <= gamma invstd ~ 3).
TEST(BatchNormFused, ConformanceCasesKeepReluInputOffTheKink) {
  int checked = 0;
  for (const OpCase& c : all_op_cases()) {
    if (c.op != "batchnorm2d_relu" && c.op != "batchnorm2d_add_relu") continue;
    SCOPED_TRACE(c.op + "_" + c.label);
    std::vector<Tensor> inputs;
    for (size_t k = 0; k < c.inputs.size(); ++k)  // as test_op_conformance.cpp makes them
      inputs.push_back(make_input(c.inputs[k], 100 + k, DType::f64, Device::cpu()));
    const Tensor beta = inputs.back();
    std::vector<int64_t> zeros;
    for (double d : {-1e-4, 1e-4}) {
      inputs.back() = add_scalar(beta, d);
      zeros.push_back(count_zeros(c.run(inputs)));
    }
    EXPECT_EQ(zeros[0], zeros[1]) << "a pre-activation lies within 1e-4 of relu's kink";
    EXPECT_GT(zeros[0], 0) << "no output clipped: the mask is not exercised";
    ++checked;
  }
  EXPECT_EQ(checked, 9);
}

// The CUDA tests' inputs above compare CUDA with the CPU elementwise (d_residual exactly in bf16):
// a pre-activation that CUDA's f32 arithmetic and the CPU's put on different sides of 0 would be
// masked on one side only. Both compute it in f32 from the same inputs, through terms of size ~1-3
// whose last bits may differ (another summation order of the statistics, FMA contraction): a few
// 1e-7. Their ~10^5 values do come within 1e-6 of 0 (one does), so the margin checked here is
// 3e-7: the emulator agrees with the CPU on every mask. On a GPU one mask could still flip; a
// BatchNormFusedCuda failure at a single element of d_residual or dx would be that, not a bug.
constexpr double kCrossDeviceMargin = 3e-7;
TEST(BatchNormFused, CudaTestInputsKeepReluInputOffTheKink) {
  for (const BnConfig& s : kCudaConfigs)
    for (Fused op : {Fused::Relu, Fused::AddRelu})
      for (bool bf16 : {false, true}) {
        SCOPED_TRACE(fmt::format("{} {}{}", op == Fused::Relu ? "relu" : "add_relu", shape_str(s.shape),
                                 bf16 ? " bf16-rounded" : ""));
        const Inputs in = make_inputs(s, DType::f64, DType::f64, Device::cpu(), bf16);
        std::vector<int64_t> zeros;
        for (double d : {-kCrossDeviceMargin, kCrossDeviceMargin}) {
          Inputs shifted = in;
          shifted.beta = add_scalar(in.beta, d);
          zeros.push_back(count_zeros(run(op, true, s, shifted).y));
        }
        EXPECT_EQ(zeros[0], zeros[1]) << "a pre-activation lies within " << kCrossDeviceMargin << " of relu's kink";
      }
}

}  // namespace
}  // namespace engine::testing
