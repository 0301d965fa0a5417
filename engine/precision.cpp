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
  ENGINE_THROW("--precision: expected fp32 or tf32, found '{}' (bf16 is not available yet)", text);
}

const char* precision_name(Precision precision) { return precision == Precision::tf32 ? "tf32" : "fp32"; }

void use_precision(Precision precision, const Device& device) {
  ENGINE_CHECK(precision == Precision::fp32 || device.is_cuda(),
               "--precision {} runs on the GPU's tensor cores, but the device is {}; the CPU computes fp32: use "
               "--precision fp32 there",
               precision_name(precision), device.str());
#if ENGINE_WITH_CUDA
  cuda::set_tf32_enabled(precision == Precision::tf32);
#endif
}

}  // namespace engine
