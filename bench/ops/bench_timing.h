// bench_timing.h - how every benchmark here times an op: one warm-up call, then `repeats` calls
// timed as a whole between two device synchronisations (wall clock, steady_clock); the median
// of 5 such rounds is the result.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "engine/device.h"
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

}  // namespace engine::bench
