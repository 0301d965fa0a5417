// runtime.cpp - the emulated CUDA runtime calls (cuda_runtime.h) and the book of device memory
// (device_memory.h). Every call completes before it returns: streams and events only have to
// exist, and a synchronisation has nothing to wait for.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "engine/check.h"
#include "engine/cuda_emulation/cuda_runtime.h"
#include "engine/cuda_emulation/device_memory.h"

struct EmulatedStream {
  unsigned flags;
};
struct EmulatedEvent {
  unsigned flags;
};

namespace engine::cuda::emulation {

namespace {

// An H100 SXM (compute capability 9.0) as cudaGetDeviceProperties describes it.
constexpr size_t kTotalMemory = size_t{80} << 30;
constexpr int kMultiProcessors = 132;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedPerBlock = 48 * 1024;
constexpr size_t kSharedPerBlockOptin = 227 * 1024;
constexpr size_t kDeviceAlignment = 256;  // cudaMalloc's alignment

struct Block {
  size_t capacity;  // bytes usable by the program (cudaMalloc's size, rounded to the alignment)
  size_t live;      // the current user's request: [live, capacity + guard) holds the pattern
  Space space;
};

std::mutex g_mutex;
std::map<uintptr_t, Block>& blocks() {
  static auto* b = new std::map<uintptr_t, Block>();  // never destroyed: memory may be freed at exit
  return *b;
}
size_t g_device_bytes = 0;

// The guard pattern: a hash of the byte's address, so that a kernel copying one buffer's guard
// zone into another's (an off-by-one on both sides of out[i] = f(in[i])) still changes it.
unsigned char guard_byte(const unsigned char* address) {
  uint64_t z = reinterpret_cast<uintptr_t>(address) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<unsigned char>(z >> 56);
}

void fill_guard(unsigned char* base, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) base[i] = guard_byte(base + i);
}

// The block that contains [ptr, ptr + nbytes), or end() (caller holds the mutex).
std::map<uintptr_t, Block>::iterator find_block(const void* ptr) {
  auto& b = blocks();
  const auto p = reinterpret_cast<uintptr_t>(ptr);
  auto it = b.upper_bound(p);
  if (it == b.begin()) return b.end();
  --it;
  return p < it->first + it->second.capacity + kGuardBytes ? it : b.end();
}

void* allocate(size_t nbytes, Space space) {
  const size_t capacity = std::max<size_t>((nbytes + kDeviceAlignment - 1) / kDeviceAlignment * kDeviceAlignment,
                                           kDeviceAlignment);
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(kDeviceAlignment, capacity + kGuardBytes));
  if (base == nullptr) return nullptr;
  std::memset(base, kUnwrittenByte, nbytes);
  fill_guard(base, nbytes, capacity + kGuardBytes);
  std::lock_guard<std::mutex> lock(g_mutex);
  blocks().emplace(reinterpret_cast<uintptr_t>(base), Block{capacity, nbytes, space});
  if (space == Space::Device) g_device_bytes += capacity;
  return base;
}

bool release(void* ptr, Space space) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = blocks().find(reinterpret_cast<uintptr_t>(ptr));
    if (it == blocks().end() || it->second.space != space) return false;
    if (space == Space::Device) g_device_bytes -= it->second.capacity;
    blocks().erase(it);
  }
  std::free(ptr);
  return true;
}

thread_local cudaError_t t_last_error = cudaSuccess;
cudaError_t record(cudaError_t status) {
  if (status != cudaSuccess) t_last_error = status;
  return status;
}

int g_current_device = 0;

}  // namespace

void set_last_error(int status) { record(static_cast<cudaError_t>(status)); }

void* allocate_device(size_t nbytes) {
  if (device_bytes_in_use() + nbytes > kTotalMemory) return nullptr;
  return allocate(nbytes, Space::Device);
}
bool free_device(void* ptr) { return release(ptr, Space::Device); }
void* allocate_pinned(size_t nbytes) { return allocate(nbytes, Space::Pinned); }
bool free_pinned(void* ptr) { return release(ptr, Space::Pinned); }
size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_device_bytes;
}

void note_handed_out(void* ptr, size_t nbytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = blocks().find(reinterpret_cast<uintptr_t>(ptr));
  ENGINE_CHECK(it != blocks().end() && nbytes <= it->second.capacity,
               "CUDA emulation: the caching allocator handed out {} bytes at {}, which is not a device block "
               "that large",
               nbytes, ptr);
  auto* base = static_cast<unsigned char*>(ptr);
  std::memset(base, kUnwrittenByte, nbytes);
  fill_guard(base, nbytes, it->second.capacity + kGuardBytes);
  it->second.live = nbytes;
}

void note_taken_back(void* ptr) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = blocks().find(reinterpret_cast<uintptr_t>(ptr));
  if (it == blocks().end()) return;
  std::memset(ptr, kUnwrittenByte, it->second.live);  // a later read of it gives NaN
}

Space classify(const void* ptr, size_t nbytes, std::string* problem) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = find_block(ptr);
  if (it == blocks().end()) return Space::Host;
  const auto offset = reinterpret_cast<uintptr_t>(ptr) - it->first;
  if (offset + nbytes > it->second.live && problem != nullptr)
    *problem = fmt::format("bytes [{}, {}) of a {} block of {} bytes at {:#x} run past its end", offset,
                           offset + nbytes, it->second.space == Space::Device ? "device" : "pinned",
                           it->second.live, it->first);
  return it->second.space;
}

bool kernel_may_use(const void* ptr) {
  if (ptr == nullptr) return true;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = find_block(ptr);
  return it != blocks().end() && reinterpret_cast<uintptr_t>(ptr) <= it->first + it->second.capacity;
}

void check_guard_zones(const char* kernel) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const auto& [address, block] : blocks()) {
    const auto* base = reinterpret_cast<const unsigned char*>(address);
    for (size_t i = block.live; i < block.capacity + kGuardBytes; ++i) {
      if (base[i] == guard_byte(base + i)) continue;
      ENGINE_THROW(
          "CUDA emulation: {} wrote past the end of a {} buffer: the buffer at {:#x} holds {} bytes and byte {} "
          "(element {} of 4-byte elements) was overwritten. Look for an index that reaches n (<= instead of <) or "
          "a grid that covers more than the buffer",
          kernel, block.space == Space::Device ? "device" : "pinned", address, block.live, i, i / 4);
    }
  }
}

}  // namespace engine::cuda::emulation

namespace emu = engine::cuda::emulation;

thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local dim3 blockDim{1, 1, 1};
thread_local dim3 gridDim{1, 1, 1};

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return emu::record(cudaErrorInvalidValue);
  emu::g_current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return emu::record(cudaErrorInvalidValue);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "CUDA emulation on the CPU (NVIDIA H100 limits)");
  prop->totalGlobalMem = emu::kTotalMemory;
  prop->sharedMemPerBlock = emu::kSharedPerBlock;
  prop->sharedMemPerBlockOptin = emu::kSharedPerBlockOptin;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = emu::kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = emu::kMultiProcessors;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::t_last_error;
  emu::t_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "cudaErrorUnknown";
  }
}
// The runtime's own wording.
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "unknown error";
  }
}

cudaError_t cudaMalloc(void** ptr, size_t nbytes) {
  *ptr = emu::allocate_device(nbytes);
  return *ptr ? cudaSuccess : emu::record(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  return emu::free_device(ptr) ? cudaSuccess : emu::record(cudaErrorInvalidValue);
}
cudaError_t cudaHostAlloc(void** ptr, size_t nbytes, unsigned) {
  *ptr = emu::allocate_pinned(nbytes);
  return *ptr ? cudaSuccess : emu::record(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  return emu::free_pinned(ptr) ? cudaSuccess : emu::record(cudaErrorInvalidValue);
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = emu::kTotalMemory;
  *free_bytes = emu::kTotalMemory - emu::device_bytes_in_use();
  return cudaSuccess;
}

namespace {

// Checks one side of a copy or memset: a device side must lie inside a live block; a host side
// must not be device memory. Throws with the details (a real GPU would fault or corrupt memory).
void check_side(const void* ptr, size_t nbytes, bool device_side, const char* call, const char* side) {
  std::string problem;
  const emu::Space space = emu::classify(ptr, nbytes, &problem);
  ENGINE_CHECK(problem.empty(), "CUDA emulation: {} {} side: {}", call, side, problem);
  if (device_side) {
    ENGINE_CHECK(space == emu::Space::Device,
                 "CUDA emulation: {} expects device memory on its {} side, found {} memory at {}", call, side,
                 space == emu::Space::Pinned ? "pinned host" : "host", ptr);
  } else {
    ENGINE_CHECK(space != emu::Space::Device,
                 "CUDA emulation: {} expects host memory on its {} side, found device memory at {}", call, side, ptr);
  }
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind, cudaStream_t) {
  if (nbytes == 0) return cudaSuccess;
  if (kind == cudaMemcpyDefault) {
    std::string ignored;
    const bool dst_device = emu::classify(dst, nbytes, &ignored) == emu::Space::Device;
    const bool src_device = emu::classify(src, nbytes, &ignored) == emu::Space::Device;
    kind = dst_device ? (src_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                      : (src_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice)
    return emu::record(cudaErrorInvalidMemcpyDirection);
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  check_side(dst, nbytes, dst_device, "cudaMemcpy", "destination");
  check_side(src, nbytes, src_device, "cudaMemcpy", "source");
  std::memmove(dst, src, nbytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, nbytes, kind, nullptr);
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t nbytes, cudaStream_t) {
  if (nbytes == 0) return cudaSuccess;
  check_side(ptr, nbytes, true, "cudaMemset", "destination");
  std::memset(ptr, value, nbytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = new EmulatedStream{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  *event = new EmulatedEvent{flags};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  return event ? cudaSuccess : emu::record(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event ? cudaSuccess : emu::record(cudaErrorInvalidResourceHandle);
}
