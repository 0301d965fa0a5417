// runtime.cpp - the emulated CUDA runtime calls (cuda_runtime.h) and the emulated device's memory
// and copy queue (device_memory.h). Kernels and memsets run when called; asynchronous copies wait
// in the queue for the next operation that would follow them on the GPU.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "engine/check.h"
#include "engine/cuda_emulation/cuda_runtime.h"
#include "engine/cuda_emulation/device_memory.h"

struct EmulatedStream {};
struct EmulatedEvent {
  uint64_t position = 0;  // the copies queued before it was recorded (device_memory.h)
};

namespace engine::cuda::emulation {

namespace {

constexpr size_t kDeviceAlignment = 256;  // cudaMalloc's alignment

struct Block {
  size_t capacity;  // bytes usable by the program (cudaMalloc's size, rounded to the alignment)
  size_t live;      // the current user's request: [live, capacity + guard) holds the guard pattern
  Space space;
  bool in_use;      // false once the caching allocator took it back
  std::vector<unsigned char> guard;  // the pattern written at [live, capacity + guard), to compare with
};

std::mutex g_mutex;  // guards the book below
std::map<uintptr_t, Block>& blocks() {
  static auto* b = new std::map<uintptr_t, Block>();  // never destroyed: memory may be freed at exit
  return *b;
}
size_t g_device_bytes = 0;

const char* space_name(Space space) { return space == Space::Device ? "device" : "pinned host"; }

// The guard pattern: quiet-NaN words whose payload hashes the word's address, so that reading past
// the end gives NaN and a kernel copying one buffer's guard zone into another's (an off-by-one on
// both sides of out[i] = f(in[i])) still changes it.
unsigned char guard_byte(const unsigned char* address) {
  const auto a = reinterpret_cast<uintptr_t>(address);
  uint64_t z = (a & ~uintptr_t{3}) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
  const uint32_t word = 0x7fc00000u | static_cast<uint32_t>(z >> 42);  // 22 payload bits
  return static_cast<unsigned char>(word >> (8 * (a & 3)));
}

// Writes the guard pattern behind the block's live extent and keeps a copy: the check after every
// launch is then one memcmp a block.
void fill_guard(unsigned char* base, Block& block) {
  block.guard.resize(block.capacity + kGuardBytes - block.live);
  for (size_t i = 0; i < block.guard.size(); ++i) block.guard[i] = guard_byte(base + block.live + i);
  std::memcpy(base + block.live, block.guard.data(), block.guard.size());
}

// The block whose memory or guard zone holds ptr, or end() (the caller holds g_mutex).
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
  Block block{capacity, nbytes, space, true, {}};
  fill_guard(base, block);
  std::lock_guard<std::mutex> lock(g_mutex);
  blocks().emplace(reinterpret_cast<uintptr_t>(base), std::move(block));
  if (space == Space::Device) g_device_bytes += capacity;
  return base;
}

bool release(void* ptr, Space space) {
  run_queued_copies();  // a free waits for the work queued before it
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

// The first changed byte of a block's guard zone, or SIZE_MAX.
size_t first_damaged_byte(uintptr_t address, const Block& block) {
  const auto* zone = reinterpret_cast<const unsigned char*>(address) + block.live;
  if (std::memcmp(zone, block.guard.data(), block.guard.size()) == 0) return SIZE_MAX;
  size_t i = 0;
  while (zone[i] == block.guard[i]) ++i;
  return block.live + i;
}

struct QueuedCopy {
  void* dst;
  const void* src;
  size_t nbytes;
  uint64_t position;  // how many copies were queued before it and it
};
std::mutex g_queue_mutex;  // taken after g_mutex where both are held
std::vector<QueuedCopy> g_queue;
uint64_t g_queued = 0;  // copies ever queued

thread_local cudaError_t t_last_error = cudaSuccess;
cudaError_t record(cudaError_t status) {
  if (status != cudaSuccess) t_last_error = status;
  return status;
}

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
  run_queued_copies();  // copies queued before the block changed hands belong to its last user
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = blocks().find(reinterpret_cast<uintptr_t>(ptr));
  ENGINE_CHECK(it != blocks().end() && nbytes <= it->second.capacity,
               "CUDA emulation: the caching allocator handed out {} bytes at {}, which is not a device block "
               "that large (a block from another allocator in the CUDA allocator's cache?)",
               nbytes, ptr);
  auto* base = static_cast<unsigned char*>(ptr);
  std::memset(base, kUnwrittenByte, nbytes);
  it->second.live = nbytes;
  it->second.in_use = true;
  fill_guard(base, it->second);
}

void note_taken_back(void* ptr) {
  run_queued_copies();
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = blocks().find(reinterpret_cast<uintptr_t>(ptr));
  ENGINE_CHECK(it != blocks().end(),
               "CUDA emulation: the caching allocator took back {}, which is not a device block (a block from "
               "another allocator in the CUDA allocator's cache?)",
               ptr);
  std::memset(ptr, kUnwrittenByte, it->second.live);  // a later read of it gives NaN
  it->second.in_use = false;
}

Space classify(const void* ptr, size_t nbytes, std::string* problem) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = find_block(ptr);
  if (it == blocks().end()) return Space::Host;
  const Block& b = it->second;
  const auto offset = reinterpret_cast<uintptr_t>(ptr) - it->first;
  if (!b.in_use) {
    *problem = fmt::format("the {} block at {:#x} was freed (its tensor or scratch buffer is gone)",
                           space_name(b.space), it->first);
  } else if (offset + nbytes > b.live) {
    *problem = fmt::format("bytes [{}, {}) of the {} block at {:#x} run past its {} bytes", offset,
                           offset + nbytes, space_name(b.space), it->first, b.live);
  }
  return b.space;
}

bool kernel_may_use(const void* ptr, std::string* problem) {
  if (ptr == nullptr) return true;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = find_block(ptr);
  if (it == blocks().end() || reinterpret_cast<uintptr_t>(ptr) > it->first + it->second.capacity) {
    *problem = "neither device memory nor pinned host memory (a host pointer: the GPU would stop with an "
               "illegal address); copy the data to the device first";
    return false;
  }
  if (!it->second.in_use) {
    *problem = fmt::format("in a {} block that was freed (use after free); keep its tensor alive until the "
                           "kernel is launched",
                           space_name(it->second.space));
    return false;
  }
  return true;
}

void check_guard_zones(const char* what) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& [address, block] : blocks()) {
    const size_t i = first_damaged_byte(address, block);
    if (i == SIZE_MAX) continue;
    fill_guard(reinterpret_cast<unsigned char*>(address), block);
    ENGINE_THROW(
        "CUDA emulation: {} wrote past the end of a {} buffer: the buffer at {:#x} holds {} bytes and byte {} "
        "(element {} of 4-byte elements) was overwritten. Look for an index that reaches n (<= instead of <) or "
        "a grid that covers more than the buffer",
        what, space_name(block.space), address, block.live, i, i / 4);
  }
}

void repair_guard_zones() {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& [address, block] : blocks())
    if (first_damaged_byte(address, block) != SIZE_MAX) fill_guard(reinterpret_cast<unsigned char*>(address), block);
}

void check_library_operand(const char* call, const char* operand, const void* ptr, size_t nbytes) {
  if (nbytes == 0) return;
  std::string problem;
  const Space space = classify(ptr, nbytes, &problem);
  ENGINE_CHECK(space == Space::Device && problem.empty(),
               "CUDA emulation: {} needs {} bytes of device memory for its operand {} at {}, found {}; the "
               "library would fault or write over another buffer",
               call, nbytes, operand, ptr, space != Space::Device ? std::string("host memory") : problem);
}

void enqueue_copy(void* dst, const void* src, size_t nbytes, bool to_host) {
  std::lock_guard<std::mutex> lock(g_queue_mutex);
  g_queue.push_back({dst, src, nbytes, ++g_queued});
  // Until the copy runs its destination reads NaN. The device source cannot change before then:
  // every later operation on the device runs the queue first.
  if (to_host) std::memset(dst, kUnwrittenByte, nbytes);
}

uint64_t queue_position() {
  std::lock_guard<std::mutex> lock(g_queue_mutex);
  return g_queued;
}

void run_queued_copies_through(uint64_t position) {
  std::lock_guard<std::mutex> lock(g_queue_mutex);
  size_t done = 0;
  for (; done < g_queue.size() && g_queue[done].position <= position; ++done)
    std::memmove(g_queue[done].dst, g_queue[done].src, g_queue[done].nbytes);
  g_queue.erase(g_queue.begin(), g_queue.begin() + static_cast<std::ptrdiff_t>(done));
}

void run_queued_copies() { run_queued_copies_through(UINT64_MAX); }

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
  return device == 0 ? cudaSuccess : emu::record(cudaErrorInvalidValue);
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

// Checks one side of a copy or memset and says where it lies: a device side must lie inside a
// block in use; a host side must not be device memory. Throws with the details (a GPU would fault
// or corrupt memory).
emu::Space check_side(const void* ptr, size_t nbytes, bool device_side, const char* call, const char* side) {
  std::string problem;
  const emu::Space space = emu::classify(ptr, nbytes, &problem);
  ENGINE_CHECK(problem.empty(), "CUDA emulation: {}'s {}: {}; copy at most what the buffer holds", call, side,
               problem);
  if (device_side) {
    ENGINE_CHECK(space == emu::Space::Device,
                 "CUDA emulation: {} expects device memory as its {}, found {} memory at {}; check the copy's "
                 "direction",
                 call, side, space == emu::Space::Pinned ? "pinned host" : "host", ptr);
  } else {
    ENGINE_CHECK(space != emu::Space::Device,
                 "CUDA emulation: {} expects host memory as its {}, found device memory at {}; check the copy's "
                 "direction",
                 call, side, ptr);
  }
  return space;
}

}  // namespace

// As on a GPU, a copy between device memory and pinned host memory is asynchronous (queued: see
// device_memory.h); one from or to pageable host memory has completed when the call returns.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind, cudaStream_t) {
  if (nbytes == 0) return cudaSuccess;
  emu::run_queued_copies();
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
  const emu::Space dst_space = check_side(dst, nbytes, dst_device, "cudaMemcpy", "destination");
  const emu::Space src_space = check_side(src, nbytes, src_device, "cudaMemcpy", "source");
  if (kind == cudaMemcpyHostToDevice && src_space == emu::Space::Pinned) {
    emu::enqueue_copy(dst, src, nbytes, false);
  } else if (kind == cudaMemcpyDeviceToHost && dst_space == emu::Space::Pinned) {
    emu::enqueue_copy(dst, src, nbytes, true);
  } else {
    std::memmove(dst, src, nbytes);
  }
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  const cudaError_t status = cudaMemcpyAsync(dst, src, nbytes, kind, nullptr);
  emu::run_queued_copies();
  return status;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t nbytes, cudaStream_t) {
  if (nbytes == 0) return cudaSuccess;
  emu::run_queued_copies();
  check_side(ptr, nbytes, true, "cudaMemset", "destination");
  std::memset(ptr, value, nbytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = new EmulatedStream{};
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  emu::run_queued_copies();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  *event = new EmulatedEvent{};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  event->position = emu::queue_position();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}
// Waits for what was queued before the event was recorded, not for what came after.
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  emu::run_queued_copies_through(event->position);
  return cudaSuccess;
}
