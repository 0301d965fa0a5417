// test_elementwise_cuda.cpp - the elementwise CUDA kernels on a tensor larger than one pass of
// their grid: elementwise_grid caps a launch at 65536 blocks of 256 threads (16.8M elements), and
// a grid-stride loop covers the rest. The conformance cases are far smaller, so only this test
// runs the loop's second pass. Add, multiply and ReLU round identically on both devices, so the
// results are compared bit for bit (the scale is 2: exact in any precision).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

TEST(ElementwiseCuda, CudaLoopsPastOneGridPassAndMatchesCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const int64_t one_pass = int64_t{65536} * 256, n = one_pass + 4099;  // the tail spans a partial block
  const Tensor a = make_input({{n}}, 41, DType::f32, Device::cpu());
  const Tensor b = make_input({{n}}, 42, DType::f32, Device::cpu());
  const Tensor expected = relu(add(mul_scalar(a, 2.0), b));
  const Tensor actual = relu(add(mul_scalar(a.to(Device::cuda()), 2.0), b.to(Device::cuda())));
  EXPECT_TRUE(all_close(actual, expected, 0, 0));
  // Past one pass the values are still the right elements' (not a copy of the first pass).
  const std::vector<float> tail = actual.slice(0, n - 5, n).to_vector<float>();
  EXPECT_EQ(tail, expected.slice(0, n - 5, n).to_vector<float>());
  EXPECT_NE(tail, actual.slice(0, n - 5 - one_pass, n - one_pass).to_vector<float>());
}

// PyTorch's relu keeps NaN (a diverging run must stay visible in the loss); its gradient there is 0.
TEST(Relu, KeepsNanOnEveryBackend) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<Device> devices = {Device::cpu()};
  if (cuda_device_count() > 0) devices.push_back(Device::cuda());
  for (const Device device : devices) {
    const std::vector<float> out =
        relu(Tensor::from_vector(std::vector<float>{nan, -1, 0, 2}, {4}).to(device)).to_vector<float>();
    EXPECT_TRUE(std::isnan(out[0])) << device.str();
    EXPECT_EQ(std::vector<float>(out.begin() + 1, out.end()), (std::vector<float>{0, 0, 2})) << device.str();
  }
}

}  // namespace
}  // namespace engine::testing
