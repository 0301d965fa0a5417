// precision.h - the precision a command trains or evaluates in, an explicit setting of every command
// and benchmark (`--precision`).
//
//   fp32  f32 everywhere (CUDA: cuBLAS default math, cuDNN FMA math). The default: results match
//         the CPU reference to f32 rounding.
//   tf32  CUDA only: f32 tensors, but GEMMs and convolutions may round their operands to TF32
//         (10 mantissa bits) for the tensor cores, accumulating in f32; PyTorch's allow_tf32.
//         About 1e-3 relative error per product; several times the fp32 throughput on an H100.
//   bf16  mixed precision: the ResNet's activations are bf16 from the stem to the pooled features
//         (8 significant bits), channels-last on a GPU; convolutions take bf16 operands and
//         accumulate in f32; parameters stay f32 (the masters SGD and the momentum update change),
//         cast to bf16 by each forward; BatchNorm statistics, the head, the logits and the loss
//         are f32. On the CPU the same values are rounded at the same points (the ops compute in
//         f32 and round their bf16 outputs), so CI trains in bf16 too. Where each cast happens:
//         docs/ARCHITECTURE.md, "Mixed precision".
// A comparison with PyTorch is fair only when both sides run the same mode: the baselines in
// bench/torch_ref/ take the same flag (bf16 there is autocast with channels_last).
#pragma once

#include <optional>
#include <string>

#include "engine/device.h"
#include "engine/tensor.h"

namespace engine {

enum class Precision { fp32, tf32, bf16 };

// "fp32", "tf32" or "bf16"; throws naming the accepted values otherwise.
Precision parse_precision(const std::string& text);
const char* precision_name(Precision precision);

// Makes `precision` the math of the GEMMs and convolutions that run on `device` from now on (bf16:
// the f32 GEMMs left, the head's, in fp32). tf32 on the CPU is refused (the CPU has no TF32
// arithmetic; it computes fp32); bf16 runs on both. In the CUDA emulation build the library
// stand-ins compute fp32 whatever the mode.
void use_precision(Precision precision, const Device& device);

// What a ResNet's activations are under `precision` on `device`: f32 in the caller's layout for
// fp32 and tf32; bf16 for bf16, channels-last (NHWC) on a GPU, where cuDNN's bf16 convolutions are
// fastest and every op of the trunk keeps that layout, and NCHW on the CPU, whose convolution
// reference computes NCHW (an NHWC activation there would be re-laid out at every convolution).
struct ActivationFormat {
  DType dtype = DType::f32;
  std::optional<MemoryFormat> format;  // none: whatever layout the input comes in
};
ActivationFormat activation_format(Precision precision, const Device& device);

}  // namespace engine
