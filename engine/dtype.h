// dtype.h - element types, their sizes and names, bf16, and a dispatch helper.
//
// f64 exists for the float64 gradient checks of the CPU references; f32 is the working type;
// bf16 is a storage type (ops compute in f32); u8 holds images, i32/i64 hold indices and labels.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <type_traits>

#include "engine/check.h"

#if defined(__CUDACC__)
#define ENGINE_HD __host__ __device__
#else
#define ENGINE_HD
#endif

namespace engine {

enum class DType : uint8_t { f32, f64, bf16, u8, i32, i64 };

// bfloat16: the top 16 bits of an IEEE float32. Conversion from float rounds to nearest even and
// keeps NaN a NaN; the same code runs on the host and in kernels, so the bits agree everywhere.
struct bf16 {
  uint16_t bits = 0;

  ENGINE_HD static bf16 from_float(float f) {
    uint32_t u;
#if defined(__CUDA_ARCH__)
    u = __float_as_uint(f);
#else
    std::memcpy(&u, &f, 4);
#endif
    bf16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet, never round it to infinity
      h.bits = static_cast<uint16_t>((u >> 16) | 0x0040u);
      return h;
    }
    const uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    h.bits = static_cast<uint16_t>((u + rounding_bias) >> 16);
    return h;
  }
  ENGINE_HD float to_float() const {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
  }
};

// Converts between any two element types, with the same result on the host and in kernels.
// bf16 goes through float. Floating to integer truncates toward zero and saturates: values below
// or above the integer type's range become its minimum or maximum and NaN becomes 0 (a plain cast
// is undefined there, and x86 and the GPU disagree on it).
template <typename Dst, typename Src>
ENGINE_HD inline Dst convert_element(Src v) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return v;
  } else if constexpr (std::is_same_v<Dst, bf16>) {
    return bf16::from_float(static_cast<float>(v));
  } else if constexpr (std::is_same_v<Src, bf16>) {
    return convert_element<Dst>(v.to_float());
  } else if constexpr (std::is_integral_v<Dst> && std::is_floating_point_v<Src>) {
    constexpr double lowest = static_cast<double>(std::numeric_limits<Dst>::lowest());
    constexpr double highest = static_cast<double>(std::numeric_limits<Dst>::max());
    const double d = static_cast<double>(v);
    if (!(d == d)) return Dst(0);  // NaN
    if (d <= lowest) return std::numeric_limits<Dst>::lowest();
    if (d >= highest) return std::numeric_limits<Dst>::max();
    return static_cast<Dst>(d);
  } else {
    return static_cast<Dst>(v);
  }
}

inline int64_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

inline std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

inline bool dtype_is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

// Calls fn.template operator()<T>() with the C++ type of `t`:
//   dispatch_dtype(t, [&]<typename T>() { fill<T>(...); });
template <typename Fn>
decltype(auto) dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::bf16: return fn.template operator()<bf16>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
  }
  ENGINE_THROW("unknown dtype code {}", static_cast<int>(t));
}

// The floating types the numerical ops compute in (f32 everywhere, f64 for gradient checks).
template <typename Fn>
decltype(auto) dispatch_float(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    default: break;
  }
  ENGINE_THROW("{}: expected a tensor of dtype f32 or f64, found {}; convert it first with .to(DType::f32)",
               op, dtype_name(t));
}

}  // namespace engine
