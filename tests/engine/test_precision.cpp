// test_precision.cpp - the --precision setting (engine/precision.h).
#include <gtest/gtest.h>

#include "engine/check.h"
#include "engine/precision.h"
#include "tests/common/test_helpers.h"
#if ENGINE_WITH_CUDA
#include "engine/cuda_context.h"
#endif

namespace engine {
namespace {

TEST(Precision, ParsesTheTwoModesAndNamesThemBack) {
  EXPECT_EQ(parse_precision("fp32"), Precision::fp32);
  EXPECT_EQ(parse_precision("tf32"), Precision::tf32);
  EXPECT_STREQ(precision_name(Precision::fp32), "fp32");
  EXPECT_STREQ(precision_name(Precision::tf32), "tf32");
  try {
    parse_precision("bf16");
    FAIL() << "bf16 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected fp32 or tf32, found 'bf16'"), std::string::npos) << e.what();
  }
}

TEST(Precision, Tf32IsRefusedOnTheCpuWithAMessageThatSaysWhatToDo) {
  EXPECT_NO_THROW(use_precision(Precision::fp32, Device::cpu()));
  try {
    use_precision(Precision::tf32, Device::cpu());
    FAIL() << "tf32 on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("use --precision fp32"), std::string::npos) << e.what();
  }
}

TEST(Precision, CudaModeSetsTheTf32SwitchOfCublasAndCudnn) {
#if ENGINE_WITH_CUDA
  use_precision(Precision::tf32, Device::cuda());
  EXPECT_TRUE(cuda::tf32_enabled());
  use_precision(Precision::fp32, Device::cuda());
  EXPECT_FALSE(cuda::tf32_enabled());
#else
  GTEST_SKIP() << "this build has no CUDA backend";
#endif
}

}  // namespace
}  // namespace engine
