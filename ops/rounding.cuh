// rounding.cuh - correctly rounded arithmetic that nvcc may not contract, for float and double.
// nvcc fuses a * b + c into one FMA by default (-fmad=true); the flat update kernels must instead
// round exactly where their CPU reference rounds, so they spell each operation out:
//     mul_rn(a, b) = round(a b)   add_rn(a, b) = round(a + b)   fma_rn(a, b, c) = round(a b + c)
// (fma_rn where the reference itself computes a fused multiply-add, with std::fma).
#pragma once

namespace engine::cuda {

__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ inline double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }

}  // namespace engine::cuda
