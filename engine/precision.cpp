// precision.cpp - see precision.h.
#include "engine/precision.h"

#include "engine/check.h"
#if ENGINE_WITH_CUDA
#include "engine/cuda_context.h"
#endif

namespace engine {

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::fp32;
  if (text == "tf32") return Precision::tf32;
  if (text == "bf16") return Precision::bf16;
  ENGINE_THROW("--precision: expected fp32, tf32 or bf16, found '{}'", text);
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

void use_precision(Precision precision, const Device& device) {
  ENGINE_CHECK(precision != Precision::tf32 || device.is_cuda(),
               "--precision tf32 runs on the GPU's tensor cores, but the device is {}; the CPU computes fp32: use "
               "--precision fp32 there (or bf16, which the CPU emulates)",
               device.str());
#if ENGINE_WITH_CUDA
  cuda::set_tf32_enabled(precision == Precision::tf32);
#endif
}

ActivationFormat activation_format(Precision precision, const Device& device) {
  if (precision != Precision::bf16) return {};
  return {DType::bf16, device.is_cuda() ? MemoryFormat::NHWC : MemoryFormat::NCHW};
}

}  // namespace engine
