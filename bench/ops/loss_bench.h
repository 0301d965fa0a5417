// loss_bench.h - what the contrastive losses' benchmarks (bench_infonce, bench_nt_xent) share:
// random unit rows as inputs, this device's GEMM rate and copy bandwidth measured in the same run,
// and one table that sets each timed row against the larger of its two bounds (FLOPs at the GEMM
// rate, bytes at the copy bandwidth).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/ops/bench_timing.h"
#include "engine/random.h"
#include "ops/l2_normalize.h"
#include "ops/matmul.h"

namespace engine::bench {

// Normal draws from `seed`, each row along the last dim scaled to unit length, f32 on `device`.
inline Tensor unit_rows(const Shape& shape, Device device, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  Generator gen(seed);
  normal_(t, gen);
  return l2_normalize(t.reshape({-1, shape.back()})).reshape(shape);
}

struct DeviceBounds {
  int64_t gemm_side = 0;  // the square GEMM measured
  double gemm_flops_per_s = 0, copy_bytes_per_s = 0;
};

// A square f32 GEMM (512 quick, 1024 on a CPU, 8192 on a GPU) and a clone of 16M-64M floats.
inline DeviceBounds measure_bounds(Device device, bool quick, int repeats) {
  const bool gpu = device.is_cuda();
  DeviceBounds b;
  b.gemm_side = quick ? 512 : (gpu ? 8192 : 1024);
  const int64_t mm = b.gemm_side;
  const Tensor x = unit_rows({mm, mm}, device, 1), y = unit_rows({mm, mm}, device, 2);
  b.gemm_flops_per_s = 2.0 * mm * mm * mm / median_seconds_per_call(device, gpu ? 10 : 2, [&] { matmul(x, y); });
  const int64_t copy_elems = quick ? (1 << 22) : (gpu ? (1 << 26) : (1 << 24));
  const Tensor big = Tensor::zeros({copy_elems}, DType::f32, device);
  b.copy_bytes_per_s = 2.0 * copy_elems * 4 / median_seconds_per_call(device, repeats, [&] { big.clone(); });
  return b;
}

struct BoundRow {
  std::string op, shape;
  double seconds, flops, bytes;
};

inline void print_bound_table(Device device, const DeviceBounds& b, const std::vector<BoundRow>& table) {
  fmt::print("\n{} (f32{}; GEMM {:.2f} TFLOP/s at {}^3, copy {:.1f} GB/s, measured in this run)\n", device.str(),
             device.is_cuda() ? ", TF32 off" : ", OpenBLAS", b.gemm_flops_per_s / 1e12, b.gemm_side,
             b.copy_bytes_per_s / 1e9);
  fmt::print("{:<22} {:<24} {:>10} {:>9} {:>9} {:>10} {:>9}\n", "op", "shape", "time (ms)", "TFLOP/s", "GB/s",
             "bound (ms)", "of bound");
  for (const BoundRow& r : table) {
    const double bound = std::max(r.flops / b.gemm_flops_per_s, r.bytes / b.copy_bytes_per_s);
    fmt::print("{:<22} {:<24} {:>10.3f} {:>9.2f} {:>9.1f} {:>10.3f} {:>8.0f}%\n", r.op, r.shape, r.seconds * 1e3,
               r.flops / r.seconds / 1e12, r.bytes / r.seconds / 1e9, bound * 1e3, 100.0 * bound / r.seconds);
  }
}

}  // namespace engine::bench
