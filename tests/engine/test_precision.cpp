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

TEST(Precision, ParsesTheThreeModesAndNamesThemBack) {
  for (const char* name : {"fp32", "tf32", "bf16"}) EXPECT_STREQ(precision_name(parse_precision(name)), name);
  EXPECT_EQ(parse_precision("bf16"), Precision::bf16);
  try {
    parse_precision("fp16");
    FAIL() << "fp16 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected fp32, tf32 or bf16, found 'fp16'"), std::string::npos) << e.what();
  }
}

TEST(Precision, Bf16ActivationsAreChannelsLastOnAGpuAndNchwOnTheCpu) {
  EXPECT_NO_THROW(use_precision(Precision::bf16, Device::cpu()));
  const ActivationFormat cpu = activation_format(Precision::bf16, Device::cpu());
  EXPECT_EQ(cpu.dtype, DType::bf16);
  EXPECT_EQ(cpu.format, MemoryFormat::NCHW);
  const ActivationFormat gpu = activation_format(Precision::bf16, Device::cuda());
  EXPECT_EQ(gpu.dtype, DType::bf16);
  EXPECT_EQ(gpu.format, MemoryFormat::NHWC);
  for (Precision p : {Precision::fp32, Precision::tf32}) {
    EXPECT_EQ(activation_format(p, Device::cuda()).dtype, DType::f32);
    EXPECT_FALSE(activation_format(p, Device::cuda()).format.has_value());
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
