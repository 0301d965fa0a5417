// linear.h - the fully connected layer, y = x weight^T + bias.
//
// Contract: x (N, in), weight (out, in), optional bias (out); y (N, out):
//     y[n, o] = sum_i x[n, i] weight[o, i] + bias[o]
// Backward: dx = dy weight, dweight = dy^T x, dbias = sum over n of dy.
//
// linear is composed at the Tensor level of two ops that already have a CPU reference, a CUDA
// path (cuBLAS for the GEMM) and a hand-written backward: matmul with the weight's transpose
// folded into the GEMM flag (no copy), and the broadcast add of the bias, whose backward reduces
// dy over the batch. It therefore has no raw level of its own.
#pragma once

#include "engine/tensor.h"

namespace engine {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

}  // namespace engine
