// cuda_libraries_emulated.cpp - the CUDA emulation build's stand-in for CUB (engine's one call to a
// CUDA library). The emulation runs our own kernels, not NVIDIA's libraries: where a CUDA path
// calls one, this build computes the same result on the CPU, on the same (host) memory. The
// complete list is in docs/ARCHITECTURE.md ("CUDA emulation"); ops/cuda_libraries_emulated.cpp has
// the cuBLAS and cuDNN calls.
#include <algorithm>
#include <numeric>
#include <vector>

#include "engine/cuda_emulation/device_memory.h"
#include "engine/random.h"

namespace engine {

// CUB's DeviceRadixSort::SortPairs over all 64 key bits is a stable sort by key. While the calling
// thread captures a CUDA graph, it is recorded and sorts at replay (device_memory.h).
void sort_pairs_by_key_cuda(int device, const uint64_t* keys_in, uint64_t* keys_out, const int64_t* values_in,
                            int64_t* values_out, int64_t n) {
  namespace emu = cuda::emulation;
  const char* call = "cub::DeviceRadixSort::SortPairs (CPU stand-in)";
  if (emu::record_library_call(
          call, [=] { sort_pairs_by_key_cuda(device, keys_in, keys_out, values_in, values_out, n); }))
    return;
  const size_t bytes = static_cast<size_t>(n) * 8;
  emu::run_queued_copies();
  emu::check_library_operand(call, "keys_in", keys_in, bytes);
  emu::check_library_operand(call, "keys_out", keys_out, bytes);
  emu::check_library_operand(call, "values_in", values_in, bytes);
  emu::check_library_operand(call, "values_out", values_out, bytes);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys_in[a] < keys_in[b]; });
  for (int64_t i = 0; i < n; ++i) {
    keys_out[i] = keys_in[order[i]];
    values_out[i] = values_in[order[i]];
  }
  emu::check_guard_zones(call);
}

}  // namespace engine
