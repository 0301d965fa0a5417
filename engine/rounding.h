// rounding.h - correctly rounded arithmetic that no compiler may contract, for host and device code
// alike, float and double:
//     mul_rn(a, b) = round(a b)    add_rn(a, b) = round(a + b)    div_rn(a, b) = round(a / b)
//     sqrt_rn(a) = round(sqrt a)   fma_rn(a, b, c) = round(a b + c), one rounding
// nvcc fuses a * b + c into one FMA by default (-fmad=true), and a host compiler may too. Where a
// CUDA kernel must give the same bits as its CPU reference (the flat updates, the random-number
// transforms of philox.h, the masking plan), both spell each rounding out with these: on the device
// through the _rn intrinsics, which are never contracted; on the host through plain operators, with
// -ffp-contract=off set for the whole project (CMakeLists.txt), and std::fma where the reference
// itself fuses.
#pragma once

#include <cmath>

#include "engine/dtype.h"  // ENGINE_HD

namespace engine {

#if defined(__CUDA_ARCH__)
ENGINE_HD inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
ENGINE_HD inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
ENGINE_HD inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
ENGINE_HD inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
ENGINE_HD inline double div_rn(double a, double b) { return __ddiv_rn(a, b); }
ENGINE_HD inline double sqrt_rn(double a) { return __dsqrt_rn(a); }
ENGINE_HD inline float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
ENGINE_HD inline double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
#else
ENGINE_HD inline float mul_rn(float a, float b) { return a * b; }
ENGINE_HD inline double mul_rn(double a, double b) { return a * b; }
ENGINE_HD inline float add_rn(float a, float b) { return a + b; }
ENGINE_HD inline double add_rn(double a, double b) { return a + b; }
ENGINE_HD inline double div_rn(double a, double b) { return a / b; }
ENGINE_HD inline double sqrt_rn(double a) { return std::sqrt(a); }
ENGINE_HD inline float fma_rn(float a, float b, float c) { return std::fma(a, b, c); }
ENGINE_HD inline double fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
#endif

}  // namespace engine
