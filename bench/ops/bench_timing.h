// bench_timing.h - how every benchmark here times an op: one warm-up call, then `repeats` calls
// timed as a whole between two device synchronisations (wall clock, steady_clock); the median
// of 5 such rounds is the result.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/device.h"
#include "engine/openmp_wait.h"
#include "engine/precision.h"
#if ENGINE_WITH_CUDA
#include "engine/cuda_context.h"
#endif

namespace engine::bench {

inline void synchronize(Device device) {
#if ENGINE_WITH_CUDA
  if (device.is_cuda()) cuda::synchronize(device.index);
#else
  (void)device;
#endif
}

inline double median_seconds_per_call(Device device, int repeats, const std::function<void()>& fn) {
  fn();
  synchronize(device);
  std::vector<double> rounds;
  for (int r = 0; r < 5; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) fn();
    synchronize(device);
    rounds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats);
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds[2];
}

// The whole main() of a benchmark: parses [--device cpu|cuda|all] [--quick] [--precision
// fp32|tf32|bf16] and runs bench_device(device, quick, precision) on each device asked for that this
// machine has, with the precision (engine/precision.h) printed first; the PyTorch twins take the same
// flag and set cuDNN's and cuBLAS's TF32 switches from it, or autocast to bf16 with channels_last
// (bench/torch_ref/timing.py). tf32 skips the CPU; bf16 runs there in the CPU's bf16 mode.
using BenchDevice = std::function<void(Device device, bool quick, Precision precision)>;
inline int run_benchmark(int argc, char** argv, const char* name, const BenchDevice& bench_device) {
  use_passive_openmp_wait(argv);
  std::string which = "all";
  bool quick = false;
  Precision precision = Precision::fp32;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--device" && i + 1 < argc) {
      which = argv[++i];
    } else if (arg == "--precision" && i + 1 < argc) {
      try {
        precision = parse_precision(argv[++i]);
      } catch (const Error& e) {
        fmt::print(stderr, "{}: {}\n", name, e.what());
        return 2;
      }
    } else {
      fmt::print(stderr, "usage: {} [--device cpu|cuda|all] [--quick] [--precision fp32|tf32|bf16]\n", name);
      return 2;
    }
  }
  const char* what = precision == Precision::tf32   ? "GEMMs and convolutions on TF32 tensor cores, GPU only"
                     : precision == Precision::bf16 ? "bf16 activations, f32 parameters, head and loss"
                                                    : "GEMMs and convolutions in f32, TF32 off";
  fmt::print("precision: {} ({})\n", precision_name(precision), what);
  try {
    if (which == "cpu" || which == "all") {
      if (precision != Precision::tf32) {
        use_precision(precision, Device::cpu());
        bench_device(Device::cpu(), quick, precision);
      } else {
        fmt::print("\ncpu: skipped (--precision tf32 is a GPU math mode)\n");
      }
    }
    if (which == "cuda" || which == "all") {
      if (cuda_device_count() > 0) {
        use_precision(precision, Device::cuda());
        bench_device(Device::cuda(), quick, precision);
      } else {
        fmt::print("\ncuda: skipped ({})\n", cuda_is_built() ? "no GPU on this machine" : "built without CUDA");
      }
    }
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}

// The same for a benchmark of single ops on f32 tensors, which has no bf16 mode of its own (an op's
// bf16 timing, where it has one, is a row of its own).
inline int run_benchmark(int argc, char** argv, const char* name,
                         const std::function<void(Device device, bool quick)>& bench_device) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--precision" && std::string(argv[i + 1]) == "bf16") {
      fmt::print(stderr, "{}: --precision bf16 is a model mode (the step benchmarks); this one times f32 ops\n", name);
      return 2;
    }
  }
  return run_benchmark(argc, argv, name, BenchDevice([&](Device device, bool quick, Precision) {
                         bench_device(device, quick);
                       }));
}

}  // namespace engine::bench
