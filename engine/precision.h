// precision.h - the math mode of the matrix products (GEMMs and convolutions), an explicit setting
// of every command that trains or evaluates and of every benchmark (`--precision`).
//
//   fp32  f32 operands, f32 products and sums (CUDA: cuBLAS default math, cuDNN FMA math). The
//         default: results match the CPU reference to f32 rounding.
//   tf32  CUDA only: f32 tensors, but GEMMs and convolutions may round their operands to TF32
//         (10 mantissa bits) for the tensor cores, accumulating in f32; PyTorch's allow_tf32.
//         About 1e-3 relative error per product; several times the fp32 throughput on an H100.
// bf16 activations come with the mixed-precision work. A comparison with PyTorch is fair only
// when both sides run the same mode: the baselines in bench/torch_ref/ set cuDNN's and cuBLAS's
// TF32 switches from the same flag.
#pragma once

#include <string>

#include "engine/device.h"

namespace engine {

enum class Precision { fp32, tf32 };

// "fp32" or "tf32"; throws naming the accepted values otherwise.
Precision parse_precision(const std::string& text);
const char* precision_name(Precision precision);

// Makes `precision` the math of the GEMMs and convolutions that run on `device` from now on. tf32
// on the CPU is refused (the CPU has no TF32 arithmetic; it computes fp32). In the CUDA emulation
// build the library stand-ins compute fp32 whatever the mode.
void use_precision(Precision precision, const Device& device);

}  // namespace engine
