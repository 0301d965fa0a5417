// bench_ops.cpp - times the first ops on the CPU and, when present, the GPU, and reports each as
// a rate against what bounds it: GB/s for the memory-bound ops (bytes read + written over time),
// TFLOP/s for matmul (2 M N K over time). bench/torch_ref/bench_ops.py times the same ops at the
// same sizes in PyTorch, so the two tables can be read side by side.
//
// Method: one warm-up call, then `repeats` calls timed as a whole between two device
// synchronisations (wall clock, steady_clock); the median of 5 such rounds is reported.
//
//   bench_ops [--device cpu|cuda|all] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "bench/ops/bench_timing.h"
#include "ops/ops.h"

using namespace engine;
using bench::median_seconds_per_call;

namespace {

Tensor random_tensor(const Shape& shape, Device device, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32, device);
  Generator gen(seed);
  uniform_(t, gen, 0.5, 1.5);
  return t;
}

void bench_device(Device device, bool quick) {
  const bool gpu = device.is_cuda();
  const int64_t n = quick ? (1 << 20) : (gpu ? (1 << 26) : (1 << 24));  // elements of the elementwise ops
  const int repeats = gpu ? 20 : 3;
  const double n_bytes = static_cast<double>(n) * 4;
  const Tensor a = random_tensor({n}, device, 1), b = random_tensor({n}, device, 2);
  const int64_t rows = quick ? 1024 : 4096;
  const Tensor m = random_tensor({rows, n / rows}, device, 3);
  const int64_t mm = quick ? 256 : (gpu ? 8192 : 1024);
  const Tensor x = random_tensor({mm, mm}, device, 4), y = random_tensor({mm, mm}, device, 5);

  struct Row {
    std::string op, shape;
    double seconds, amount;
    const char* unit;
  };
  std::vector<Row> table;
  auto gbps = [&](const std::string& op, const std::string& shape, double bytes, const std::function<void()>& fn) {
    table.push_back({op, shape, median_seconds_per_call(device, repeats, fn), bytes / 1e9, "GB/s"});
  };
  const std::string vec = fmt::format("({},)", n), mat = shape_str(m.shape());
  gbps("add", vec, 3 * n_bytes, [&] { add(a, b); });
  gbps("mul", vec, 3 * n_bytes, [&] { mul(a, b); });
  gbps("mul_scalar", vec, 2 * n_bytes, [&] { mul_scalar(a, 0.5); });
  gbps("relu", vec, 2 * n_bytes, [&] { relu(a); });
  gbps("exp", vec, 2 * n_bytes, [&] { exp(a); });
  gbps("sum(dim=1)", mat, n_bytes, [&] { sum(m, 1); });
  gbps("sum(dim=0)", mat, n_bytes, [&] { sum(m, 0); });
  Tensor fill = Tensor::empty({n}, DType::f32, device);
  Generator gen(6);
  gbps("uniform_", vec, n_bytes, [&] { uniform_(fill, gen); });
  gbps("normal_", vec, n_bytes, [&] { normal_(fill, gen); });
  table.push_back({"matmul", fmt::format("({0}, {0}) @ ({0}, {0})", mm),
                   median_seconds_per_call(device, gpu ? 10 : 2, [&] { matmul(x, y); }),
                   2.0 * mm * mm * mm / 1e12, "TFLOP/s"});

  fmt::print("\n{} (f32{})\n", device.str(),
             gpu ? ", TF32 off" : ", OpenBLAS threads as configured by OPENBLAS_NUM_THREADS");
  fmt::print("{:<12} {:<28} {:>12} {:>12}\n", "op", "shape", "time (ms)", "rate");
  for (const Row& r : table)
    fmt::print("{:<12} {:<28} {:>12.3f} {:>8.2f} {}\n", r.op, r.shape, r.seconds * 1e3, r.amount / r.seconds, r.unit);
}

}  // namespace

int main(int argc, char** argv) { return bench::run_benchmark(argc, argv, "bench_ops", bench_device); }
