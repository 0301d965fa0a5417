// philox.h - Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
// and the transforms from its 32-bit words to uniform and normal numbers. Host and device code.
//
// Philox is counter based: the output is a pure function of a 128-bit counter and a 64-bit key,
// so any element of any stream can be computed independently, in any order, on any device.
// The engine's layout (Generator in random.h):
//     key     = (seed low 32 bits, seed high 32 bits)
//     counter = (block low, block high, stream low, stream high)
// Each block gives four 32-bit words.
//
// Bit-identical on CPU and GPU. Integer arithmetic is exact everywhere. The floating transforms
// (uniform scaling, Box-Muller) use our own log and sin/cos in double precision, built only from
// correctly rounded IEEE operations (engine/rounding.h). Library log/sin/cos would differ in the last
// bit between glibc and CUDA.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/rounding.h"

#include "engine/dtype.h"  // ENGINE_HD

namespace engine::philox {

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // round multipliers
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt 3)

ENGINE_HD inline uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Ten rounds of S-box (two 32x32->64 multiplications) and P-box (word permutation with key XOR).
ENGINE_HD inline void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    const uint32_t hi0 = mulhi32(kMul0, c0), lo0 = kMul0 * c0;
    const uint32_t hi1 = mulhi32(kMul1, c2), lo1 = kMul1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The four words of block `block` of stream `stream` under `seed`.
ENGINE_HD inline void block_words(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  const uint32_t counter[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                               static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(counter, key, out);
}

// Uniform in [0, 1) from the top 24 bits (every value exact in float).
ENGINE_HD inline double uniform24(uint32_t word) { return static_cast<double>(word >> 8) * (1.0 / 16777216.0); }
// Uniform in [0, 1) from all 32 bits (exact in double).
ENGINE_HD inline double uniform32(uint32_t word) { return static_cast<double>(word) * (1.0 / 4294967296.0); }

// Natural log of u in (0, 1]. With u = m * 2^e and m in [sqrt(1/2), sqrt(2)):
//   log u = e log 2 + 2 atanh(f),  f = (m - 1) / (m + 1),  |f| <= 0.1716
//   2 atanh(f) = 2 f (1 + f^2/3 + f^4/5 + ...), 13 terms reach double precision.
ENGINE_HD inline double log_unit(double u) {
  int e = 0;
  double m = frexp(u, &e);  // exact: m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m = mul_rn(m, 2.0);  // exact
    e -= 1;
  }
  const double f = div_rn(add_rn(m, -1.0), add_rn(m, 1.0));
  const double s = mul_rn(f, f);
  double poly = 1.0 / 25.0;
  // The coefficients 1 / (2k + 1) are correctly rounded constants, the same on host and device.
  for (int k = 11; k >= 0; --k) poly = add_rn(1.0 / static_cast<double>(2 * k + 1), mul_rn(s, poly));
  return add_rn(mul_rn(static_cast<double>(e), 0.69314718055994530942), mul_rn(mul_rn(2.0, f), poly));
}

// sin and cos of y in [0, pi/4] by their Taylor series (y^19/19! < 1e-19 there).
ENGINE_HD inline void sincos_small(double y, double& s, double& c) {
  const double y2 = mul_rn(y, y);
  double ps = 1.0, pc = 1.0;
  for (int k = 9; k >= 1; --k) {  // 1 / ((2k)(2k+1)) and 1 / ((2k-1)(2k)): correctly rounded constants
    ps = add_rn(1.0, mul_rn(mul_rn(-y2, 1.0 / static_cast<double>((2 * k) * (2 * k + 1))), ps));
    pc = add_rn(1.0, mul_rn(mul_rn(-y2, 1.0 / static_cast<double>((2 * k - 1) * (2 * k))), pc));
  }
  s = mul_rn(y, ps);
  c = pc;
}

// sin and cos of 2 pi t for t in [0, 1): quadrant by exact scaling, then an angle in [0, pi/4].
ENGINE_HD inline void sincos_turns(double t, double& s, double& c) {
  const double q4 = mul_rn(t, 4.0);  // exact
  const int quadrant = static_cast<int>(q4);
  double f = add_rn(q4, -static_cast<double>(quadrant));  // exact, in [0, 1)
  const bool upper = f > 0.5;
  if (upper) f = add_rn(1.0, -f);  // exact; use sin(pi/2 - y) = cos(y)
  double sy, cy;
  sincos_small(mul_rn(f, 1.57079632679489661923), sy, cy);
  if (upper) {
    const double tmp = sy;
    sy = cy;
    cy = tmp;
  }
  switch (quadrant) {  // rotate by quadrant * pi/2
    case 0: s = sy; c = cy; break;
    case 1: s = cy; c = -sy; break;
    case 2: s = -sy; c = -cy; break;
    default: s = -cy; c = sy; break;
  }
}

// Two independent standard normals from two words (Box-Muller):
//   r = sqrt(-2 log u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), u1 in (0, 1], u2 in [0, 1).
ENGINE_HD inline void normal_pair(uint32_t w0, uint32_t w1, double& z0, double& z1) {
  const double u1 = static_cast<double>(static_cast<uint64_t>(w0) + 1) * (1.0 / 4294967296.0);
  const double r = sqrt_rn(mul_rn(-2.0, log_unit(u1)));
  double s, c;
  sincos_turns(uniform32(w1), s, c);
  z0 = mul_rn(r, c);
  z1 = mul_rn(r, s);
}

}  // namespace engine::philox
