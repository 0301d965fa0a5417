// simt.h - the SIMT emulator behind the emulation build's kernel launches (see cuda_runtime.h).
//
// A launch runs its blocks one after another on the calling host thread. Within a block every CUDA
// thread is a fiber (Boost.Context): it runs until it reaches a synchronisation point
// (__syncthreads, a warp collective) and then yields to the block's scheduler, which resumes the
// waiting threads once the point is complete. A thread that never synchronises runs straight
// through, so elementwise kernels cost one call per thread, not two context switches.
//
//   - __syncthreads() is a barrier of the block's live threads; threads waiting at different
//     __syncthreads() calls are a fault (the CUDA programming guide leaves it undefined).
//   - __syncwarp, __shfl*_sync and __ballot_sync complete when every live lane
//     named in the mask has arrived at the same collective with the same mask; a lane reading the
//     value of a lane that exited or is not in the mask, a mask without the caller's own lane, lanes
//     of one mask at different collectives, and a block in which no thread can go on, are faults.
//   - __activemask() returns the lanes of the warp waiting at the same __activemask() once no lane
//     of the warp can run further (the lanes the hardware would have converged).
//   - __shared__ memory (static and dynamic) is filled with NaN bytes before every block, so a read
//     of a value no thread of the block wrote gives NaN (or -1 for integers).
//   - set_schedule_seed(s) (or ENGINE_CUDA_EMULATION_SEED=s) runs the blocks and the threads of
//     each block in an order shuffled by s, between every two synchronisation points, so a missing
//     barrier cannot hide behind one lucky order. Seed 0 is the plain order.
//
// A fault throws engine::Error from the launch, naming the kernel, the block, the threads and the
// source lines involved. A launch beyond the H100's limits fails as on the GPU: cudaGetLastError()
// returns the error and the launch helper reports it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "device_memory.h"  // stream capture

namespace engine::cuda::emulation {

// Where in the kernel source a synchronisation point was reached.
struct Site {
  const char* file;
  int line;
};

enum class Collective : uint8_t { SyncWarp, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, ActiveMask };

void block_barrier(Site site);
// The calling lane's part in a warp collective: its value (up to 8 bytes), the lane or offset or
// predicate argument, and the width; returns this lane's result bits.
uint64_t warp_collective(Collective kind, unsigned mask, uint64_t value, int argument, int width, Site site);

// The launch's dynamic shared memory (the `extern __shared__` array of CUDA).
void* dynamic_shared_memory();

// What a launch runs for each thread: run(context), which calls the kernel with its parameters.
struct KernelBody {
  void (*run)(const void* context);
  const void* context;
};
// The pointer parameters of a launch (index and value), checked against device memory.
struct PointerParameters {
  static constexpr int kMax = 32;
  int count = 0;
  int index[kMax];
  const void* value[kMax];
};
// Runs a launch. Returns the configuration error a GPU would report (cudaErrorInvalidConfiguration,
// cudaErrorInvalidValue, ...) without running anything, or 0; throws engine::Error on a fault.
int execute(const char* name, const void* kernel, const unsigned grid[3], const unsigned block[3],
            size_t dynamic_shared, const KernelBody& body, const PointerParameters& pointers);
// The configuration error a GPU would report for a launch, or 0 (execute checks it first).
int check_configuration(const void* kernel, const unsigned grid[3], const unsigned block[3], size_t dynamic_shared);

// The seed of the shuffled schedule; 0 runs blocks and threads in index order.
void set_schedule_seed(uint64_t seed);
uint64_t schedule_seed();
// How many launches and emulated threads ran since the process started (for logs and tests). A
// captured launch counts when a graph replays it.
struct Counters {
  int64_t launches = 0;
  int64_t threads = 0;
  int64_t context_switches = 0;
};
Counters counters();

// Runs `call` (the kernel and its parameters, already converted) as a launch: every thread calls
// the kernel with a copy of the parameters.
template <typename Call>
int execute_call(const char* name, const unsigned grid[3], const unsigned block[3], size_t dynamic_shared,
                 const Call& call) {
  using Tuple = decltype(call.params);
  PointerParameters pointers;
  [&]<size_t... I>(std::index_sequence<I...>) {
    (
        [&] {
          using P = std::tuple_element_t<I, Tuple>;
          if constexpr (std::is_pointer_v<P>) {
            if (pointers.count < PointerParameters::kMax) {
              pointers.index[pointers.count] = static_cast<int>(I);
              pointers.value[pointers.count++] = static_cast<const void*>(std::get<I>(call.params));
            }
          }
        }(),
        ...);
  }(std::make_index_sequence<std::tuple_size_v<Tuple>>{});
  const KernelBody body{[](const void* context) {
                          const Call& c = *static_cast<const Call*>(context);
                          std::apply(c.kernel, c.params);
                        },
                        &call};
  return execute(name, reinterpret_cast<const void*>(call.kernel), grid, block, dynamic_shared, body, pointers);
}

// Kernel launch with CUDA's by-value parameter passing: the arguments are converted to the
// kernel's parameter types once. On a capturing stream the converted arguments are copied into the
// recorded node, so a value passed at capture is what every replay passes; the configuration is
// checked at once, so that a bad launch fails at its line.
template <typename... Params, typename... Args>
int launch(const char* name, const char* file, int line, EmulatedStream* stream, void (*kernel)(Params...),
           const unsigned grid[3], const unsigned block[3], size_t dynamic_shared, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch passes one argument per parameter");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  struct Call {
    void (*kernel)(Params...);
    Tuple params;
  };
  Call call{kernel, Tuple(std::forward<Args>(args)...)};
  const int route = route_work(stream);
  if (route == 0) return execute_call(name, grid, block, dynamic_shared, call);
  if (route != kRecord) return route;
  const int status = check_configuration(reinterpret_cast<const void*>(kernel), grid, block, dynamic_shared);
  if (status != 0) {
    set_last_error(status);
    return status;
  }
  const std::array<unsigned, 3> g{grid[0], grid[1], grid[2]}, b{block[0], block[1], block[2]};
  record_work(stream, name, file, line, [name, g, b, dynamic_shared, call = std::move(call)] {
    return execute_call(name, g.data(), b.data(), dynamic_shared, call);
  });
  return 0;
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp collectives move values of up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace engine::cuda::emulation

// ---- the device functions kernels call ----
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  engine::cuda::emulation::block_barrier({file, line});
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  engine::cuda::emulation::warp_collective(engine::cuda::emulation::Collective::SyncWarp, mask, 0, 0, 32,
                                           {file, line});
}
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<unsigned>(engine::cuda::emulation::warp_collective(
      engine::cuda::emulation::Collective::ActiveMask, 0xffffffffu, 0, 0, 32, {file, line}));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(engine::cuda::emulation::warp_collective(
      engine::cuda::emulation::Collective::Ballot, mask, predicate != 0, 0, 32, {file, line}));
}

#define ENGINE_EMULATED_SHUFFLE_(name, kind)                                                                  \
  template <typename T>                                                                                       \
  T name(unsigned mask, T var, int argument, int width = 32, const char* file = __builtin_FILE(),             \
         int line = __builtin_LINE()) {                                                                       \
    namespace emu = engine::cuda::emulation;                                                                  \
    return emu::from_bits<T>(emu::warp_collective(emu::Collective::kind, mask, emu::to_bits(var), argument,    \
                                                  width, {file, line}));                                      \
  }
ENGINE_EMULATED_SHUFFLE_(__shfl_sync, ShflIdx)
ENGINE_EMULATED_SHUFFLE_(__shfl_up_sync, ShflUp)
ENGINE_EMULATED_SHUFFLE_(__shfl_down_sync, ShflDown)
ENGINE_EMULATED_SHUFFLE_(__shfl_xor_sync, ShflXor)
#undef ENGINE_EMULATED_SHUFFLE_

// Atomics: emulated threads switch only at synchronisation points, so a plain read-modify-write
// cannot be interleaved with another thread's.
namespace engine::cuda::emulation {
template <typename T, typename Update>
T read_modify_write(T* address, Update update) {
  const T old = *address;
  *address = update(old);
  return old;
}
}  // namespace engine::cuda::emulation
template <typename T>
T atomicAdd(T* address, T value) {
  return engine::cuda::emulation::read_modify_write(address, [=](T old) { return old + value; });
}
template <typename T>
T atomicExch(T* address, T value) {
  return engine::cuda::emulation::read_modify_write(address, [=](T) { return value; });
}
template <typename T>
T atomicMax(T* address, T value) {
  return engine::cuda::emulation::read_modify_write(address, [=](T old) { return old < value ? value : old; });
}
template <typename T>
T atomicMin(T* address, T value) {
  return engine::cuda::emulation::read_modify_write(address, [=](T old) { return value < old ? value : old; });
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  return engine::cuda::emulation::read_modify_write(address, [=](T old) { return old == compare ? value : old; });
}
