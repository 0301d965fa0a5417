// test_helpers.h - what every test shares: close comparison, the finite-difference gradient
// check, deterministic inputs in any layout, and the skip for machines without a GPU.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace engine::testing {

// CUDA cases call this first: without a usable GPU they skip instead of failing.
#define SKIP_WITHOUT_CUDA()                                                                   \
  do {                                                                                        \
    if (::engine::cuda_device_count() == 0)                                                   \
      GTEST_SKIP() << (::engine::cuda_is_built() ? "no CUDA device on this machine"           \
                                                 : "this build has no CUDA backend");         \
  } while (0)

// CUDA cases at the sizes training uses (a ResNet-50 layer at batch 256, a queue of 65536) take
// the emulator hours, so in the emulation build they skip; each has a small twin that does run
// there. Their names contain "CudaRealSize": scripts/test-emulation.sh counts them as skipped by
// design, and scripts/gpu-check.sh runs them on a GPU with the other CUDA cases.
#if ENGINE_CUDA_EMULATION
#define SKIP_REAL_SIZE_ON_EMULATOR() \
  GTEST_SKIP() << "real-size CUDA case: GPU only (the emulator runs its small twin)"
#else
#define SKIP_REAL_SIZE_ON_EMULATOR() \
  do {                               \
  } while (0)
#endif

// Per element |actual - expected| <= atol + rtol * |expected| (llm.c's rule). On failure the
// message gives the worst element, the first few mismatches and the count.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol);

// How a test input is laid out in memory: the values are the same, the strides differ.
enum class Layout {
  Contiguous,
  Transposed,  // the last two dims swapped in storage: a transpose() view of a contiguous tensor
  Strided,     // every other element of dim 0 of a tensor twice as long: a slice(0, ..., step 2)
  ChannelsLast,  // a 4-D (N, C, H, W) tensor stored NHWC
};

struct InputSpec {
  Shape shape;
  double low = -1.0, high = 1.0;
  Layout layout = Layout::Contiguous;
  double avoid_zero = 0.0;  // push |x| < avoid_zero out to +-avoid_zero (away from relu's kink)
};

// Deterministic values from (seed, spec): the same numbers whatever the dtype and device, so an
// f64 CPU run, an f32 CPU run and an f32 CUDA run of one case see the same inputs.
Tensor make_input(const InputSpec& spec, uint64_t seed, DType dtype, Device device);

// The message of the error `f` throws, or "(no error)", for tests of what a refusal says.
std::string error_of(const std::function<void()>& f);

// Checks d(sum(f(x) * w))/dx of every input against central finite differences in float64 on the
// CPU (w fixed random weights). Inputs must be f64 CPU tensors; they are marked requires_grad.
// Passes when |analytic - numeric| <= tol * max(|analytic|, |numeric|, 1) everywhere (Caffe's rule).
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double eps = 1e-6, double tol = 1e-6);

}  // namespace engine::testing
