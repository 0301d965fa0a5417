// runtime.cpp - the emulated CUDA runtime calls (cuda_runtime.h) and the emulated device's memory,
// copy queue and stream capture (device_memory.h). Kernels and memsets run when called;
// asynchronous copies wait in the queue for the next operation that would follow them on the GPU;
// work issued to a capturing stream is recorded and runs when its graph is launched.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/check.h"
#include "engine/cuda_emulation/cuda_runtime.h"
#include "engine/cuda_emulation/device_memory.h"

namespace engine::cuda::emulation {
struct Capture;
// Where an event was last recorded. Shared with the graph nodes that record it, so that a graph
// replayed after the event was destroyed does not write freed memory.
struct EventMark {
  std::atomic<uint64_t> position{0};  // the copies queued before it was recorded (device_memory.h)
  std::atomic<uint64_t> capture{0};   // the capture that recorded it, or 0 when it was recorded eagerly
};
}  // namespace engine::cuda::emulation

struct EmulatedStream {
  engine::cuda::emulation::Capture* capture = nullptr;  // the capture in progress (under g_capture_mutex)
};
struct EmulatedEvent {
  std::shared_ptr<engine::cuda::emulation::EventMark> mark = std::make_shared<engine::cuda::emulation::EventMark>();
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

// ---- stream capture ----

// One recorded operation of a graph.
struct Node {
  const char* what;  // the kernel's name or the call
  const char* file;  // where it was issued, or null
  int line;
  std::function<int()> run;  // returns a CUDA status; throws engine::Error on a fault
};
using Nodes = std::vector<Node>;

struct Capture {
  EmulatedStream* stream;
  std::thread::id thread;  // the thread that began it: only it may end it
  uint64_t id;             // EventMark::capture of the events it records
  bool invalidated = false;
  Nodes nodes;
};

namespace {

std::mutex g_capture_mutex;             // guards the captures, every EmulatedStream::capture and the counters
std::atomic<int> g_captures_active{0};  // route_work()'s fast answer when nobody captures
std::map<uint64_t, Capture*> g_captures;  // in progress, by id
uint64_t g_capture_ids = 0;
GraphCounters g_graph_counters;
thread_local Capture* t_capture = nullptr;  // the capture the calling thread began

// The capture refuses a call: it is invalidated, and the call returns (and leaves as last error)
// cudaErrorStreamCaptureUnsupported. The caller holds g_capture_mutex.
cudaError_t refuse_locked(Capture* capture) {
  capture->invalidated = true;
  return record(cudaErrorStreamCaptureUnsupported);
}

// For the calls that wait for or read the device: refused while the calling thread captures.
cudaError_t refuse_if_capturing() {
  if (t_capture == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  return refuse_locked(t_capture);
}

// The capture in progress with this id, or null (the caller holds g_capture_mutex).
Capture* capture_in_progress(uint64_t id) {
  auto it = g_captures.find(id);
  return it == g_captures.end() ? nullptr : it->second;
}

}  // namespace

int route_work(EmulatedStream* stream) {
  if (g_captures_active.load() == 0) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  if (stream != nullptr && stream->capture != nullptr)
    return stream->capture->invalidated ? record(cudaErrorStreamCaptureInvalidated) : kRecord;
  // The capturing thread issues work to another stream: on a GPU that work would run at once,
  // unordered with the captured work, and the engine never does it inside a captured step.
  if (t_capture != nullptr) return refuse_locked(t_capture);
  return cudaSuccess;
}

void record_work(EmulatedStream* stream, const char* what, const char* file, int line, std::function<int()> work) {
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  ENGINE_CHECK(stream->capture != nullptr,
               "CUDA emulation: {} was issued to a capturing stream whose capture ended before it could be "
               "recorded; a stream's capture is ended by the thread that captures, after the work it issues",
               what);
  stream->capture->nodes.push_back({what, file, line, std::move(work)});
  ++g_graph_counters.nodes_recorded;
}

bool record_library_call(const char* call, std::function<void()> work) {
  Capture* capture = t_capture;
  if (capture == nullptr) return false;
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  ENGINE_CHECK(!capture->invalidated,
               "CUDA emulation: {} was called while this thread captures a stream whose capture an earlier call "
               "invalidated (cudaErrorStreamCaptureInvalidated; that call returned "
               "cudaErrorStreamCaptureUnsupported); end the capture and find the refused call",
               call);
  capture->nodes.push_back({call, nullptr, 0, [work = std::move(work)] {
                              work();
                              return 0;
                            }});
  ++g_graph_counters.nodes_recorded;
  return true;
}

GraphCounters graph_counters() {
  std::lock_guard<std::mutex> lock(g_capture_mutex);
  return g_graph_counters;
}

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
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
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
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "the capture was not initiated in this stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
  }
}

cudaError_t cudaMalloc(void** ptr, size_t nbytes) {
  *ptr = emu::allocate_device(nbytes);
  return *ptr ? cudaSuccess : emu::record(cudaErrorMemoryAllocation);
}
// cudaFree and cudaFreeHost synchronise the device: refused while the calling thread captures.
cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (const cudaError_t refused = emu::refuse_if_capturing()) return refused;
  return emu::free_device(ptr) ? cudaSuccess : emu::record(cudaErrorInvalidValue);
}
cudaError_t cudaHostAlloc(void** ptr, size_t nbytes, unsigned) {
  *ptr = emu::allocate_pinned(nbytes);
  return *ptr ? cudaSuccess : emu::record(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  if (const cudaError_t refused = emu::refuse_if_capturing()) return refused;
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

namespace {

// cudaMemcpyDefault resolved from where the two sides lie.
cudaMemcpyKind resolve_kind(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  if (kind != cudaMemcpyDefault) return kind;
  std::string ignored;
  const bool dst_device = emu::classify(dst, nbytes, &ignored) == emu::Space::Device;
  const bool src_device = emu::classify(src, nbytes, &ignored) == emu::Space::Device;
  return dst_device ? (src_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                    : (src_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
}

struct CopySpaces {
  emu::Space dst, src;
};
// Checks both sides of a copy of a resolved kind and says where they lie.
CopySpaces check_copy(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  return {check_side(dst, nbytes, dst_device, "cudaMemcpy", "destination"),
          check_side(src, nbytes, src_device, "cudaMemcpy", "source")};
}

// The copy, issued now (eagerly, or by a graph's replay): queued when it is between the device and
// pinned memory, done at once otherwise.
cudaError_t copy_now(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  emu::run_queued_copies();
  kind = resolve_kind(dst, src, nbytes, kind);
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return emu::record(cudaErrorInvalidMemcpyDirection);
  const CopySpaces spaces = check_copy(dst, src, nbytes, kind);
  if (kind == cudaMemcpyHostToDevice && spaces.src == emu::Space::Pinned) {
    emu::enqueue_copy(dst, src, nbytes, false);
  } else if (kind == cudaMemcpyDeviceToHost && spaces.dst == emu::Space::Pinned) {
    emu::enqueue_copy(dst, src, nbytes, true);
  } else {
    std::memmove(dst, src, nbytes);
  }
  return cudaSuccess;
}

cudaError_t memset_now(void* ptr, int value, size_t nbytes) {
  emu::run_queued_copies();
  check_side(ptr, nbytes, true, "cudaMemset", "destination");
  std::memset(ptr, value, nbytes);
  return cudaSuccess;
}

// The capture of `stream` refuses a call (the caller found it capturing).
cudaError_t refuse_for(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
  return stream->capture ? emu::refuse_locked(stream->capture) : emu::record(cudaErrorStreamCaptureUnsupported);
}

}  // namespace

// As on a GPU, a copy between device memory and pinned host memory is asynchronous (queued: see
// device_memory.h); one from or to pageable host memory has completed when the call returns. On a
// capturing stream the copy is recorded (its sides checked now and again at replay); one with a
// pageable side is refused, since the graph would read or write that memory only at replay.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (nbytes == 0) return cudaSuccess;
  const int route = emu::route_work(stream);
  if (route == cudaSuccess) return copy_now(dst, src, nbytes, kind);
  if (route != emu::kRecord) return static_cast<cudaError_t>(route);
  kind = resolve_kind(dst, src, nbytes, kind);
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return emu::record(cudaErrorInvalidMemcpyDirection);
  const CopySpaces spaces = check_copy(dst, src, nbytes, kind);
  if (spaces.dst == emu::Space::Host || spaces.src == emu::Space::Host) return refuse_for(stream);
  emu::record_work(stream, "cudaMemcpyAsync", nullptr, 0,
                   [dst, src, nbytes, kind] { return copy_now(dst, src, nbytes, kind); });
  return cudaSuccess;
}
// Synchronous: refused while the calling thread captures.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t nbytes, cudaMemcpyKind kind) {
  if (const cudaError_t refused = emu::refuse_if_capturing()) return refused;
  const cudaError_t status = nbytes == 0 ? cudaSuccess : copy_now(dst, src, nbytes, kind);
  emu::run_queued_copies();
  return status;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t nbytes, cudaStream_t stream) {
  if (nbytes == 0) return cudaSuccess;
  const int route = emu::route_work(stream);
  if (route == cudaSuccess) return memset_now(ptr, value, nbytes);
  if (route != emu::kRecord) return static_cast<cudaError_t>(route);
  check_side(ptr, nbytes, true, "cudaMemset", "destination");
  emu::record_work(stream, "cudaMemsetAsync", nullptr, 0, [ptr, value, nbytes] { return memset_now(ptr, value, nbytes); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = new EmulatedStream{};
  return cudaSuccess;
}
// Waiting for a capturing stream's work, which has not run, is refused; so is the legacy stream
// (it waits for every stream) while the calling thread captures.
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream == nullptr) {
    if (const cudaError_t refused = emu::refuse_if_capturing()) return refused;
  } else {
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    if (stream->capture) return emu::refuse_locked(stream->capture);
  }
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
// On a capturing stream the record is a node: the event takes its position when the graph runs.
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  const int route = emu::route_work(stream);
  if (route != cudaSuccess && route != emu::kRecord) return static_cast<cudaError_t>(route);
  std::shared_ptr<emu::EventMark> mark = event->mark;
  if (route == cudaSuccess) {
    mark->position = emu::queue_position();
    mark->capture = 0;
    return cudaSuccess;
  }
  {
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    if (stream->capture) mark->capture = stream->capture->id;
  }
  emu::record_work(stream, "cudaEventRecord", nullptr, 0, [mark] {
    mark->position = emu::queue_position();
    mark->capture = 0;
    return 0;
  });
  return cudaSuccess;
}
// A stream that is not capturing may not wait for an event recorded in a capture in progress: on a
// GPU it would join the capture (a fork, which the emulation does not follow).
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  const int route = emu::route_work(stream);
  if (route != cudaSuccess && route != emu::kRecord) return static_cast<cudaError_t>(route);
  std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
  emu::Capture* recorded_in = emu::capture_in_progress(event->mark->capture);
  if (recorded_in && (stream == nullptr || stream->capture != recorded_in)) return emu::refuse_locked(recorded_in);
  return cudaSuccess;
}
// Waits for what was queued before the event was recorded, not for what came after. An event
// recorded in a capture in progress has not happened: waiting for it is refused.
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return emu::record(cudaErrorInvalidResourceHandle);
  {
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    if (emu::Capture* recorded_in = emu::capture_in_progress(event->mark->capture))
      return emu::refuse_locked(recorded_in);
  }
  emu::run_queued_copies_through(event->mark->position);
  return cudaSuccess;
}

// ---- stream capture and graphs ----

struct EmulatedGraph {
  std::shared_ptr<const emu::Nodes> nodes;
};
struct EmulatedGraphExec {
  std::shared_ptr<const emu::Nodes> nodes;  // shared with the graph: instantiating copies nothing
};

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr) return emu::record(cudaErrorStreamCaptureUnsupported);  // the legacy stream, as on a GPU
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed)
    return emu::record(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
  if (stream->capture) return emu::record(cudaErrorIllegalState);
  if (emu::t_capture) return emu::refuse_locked(emu::t_capture);  // one capture a thread
  auto* capture = new emu::Capture{stream, std::this_thread::get_id(), ++emu::g_capture_ids, false, {}};
  emu::g_captures.emplace(capture->id, capture);
  stream->capture = capture;
  emu::t_capture = capture;
  ++emu::g_captures_active;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return emu::record(cudaErrorInvalidValue);
  std::unique_ptr<emu::Capture> capture;
  {
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    if (stream == nullptr || stream->capture == nullptr) return emu::record(cudaErrorStreamCaptureUnmatched);
    if (stream->capture->thread != std::this_thread::get_id()) return emu::record(cudaErrorStreamCaptureWrongThread);
    capture.reset(stream->capture);
    stream->capture = nullptr;
    emu::g_captures.erase(capture->id);
    emu::t_capture = nullptr;
    --emu::g_captures_active;
    if (!capture->invalidated) ++emu::g_graph_counters.graphs_captured;
  }
  if (capture->invalidated) {
    *graph = nullptr;
    return emu::record(cudaErrorStreamCaptureInvalidated);
  }
  *graph = new EmulatedGraph{std::make_shared<const emu::Nodes>(std::move(capture->nodes))};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return emu::record(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
  const emu::Capture* capture = stream ? stream->capture : nullptr;
  *status = capture == nullptr       ? cudaStreamCaptureStatusNone
            : capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                   : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  if (exec == nullptr || graph == nullptr || flags != 0) return emu::record(cudaErrorInvalidValue);
  *exec = new EmulatedGraphExec{graph->nodes};
  return cudaSuccess;
}

// Replays the graph's nodes in order on the calling thread, each checked as when it ran at once; a
// fault names the node. Refused while the calling thread captures (graphs do not nest here).
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return emu::record(cudaErrorInvalidValue);
  const int route = emu::route_work(stream);
  if (route == emu::kRecord) return refuse_for(stream);
  if (route != cudaSuccess) return static_cast<cudaError_t>(route);
  {
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    ++emu::g_graph_counters.replays;
  }
  emu::run_queued_copies();
  const emu::Nodes& nodes = *exec->nodes;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const emu::Node& node = nodes[i];
    int status = cudaSuccess;
    try {
      status = node.run();
    } catch (const engine::Error& e) {
      const std::string origin = node.file ? fmt::format(", captured at {}:{}", node.file, node.line) : "";
      throw engine::Error(e.file().c_str(), e.line(), e.expression(),
                          fmt::format("{} [cudaGraphLaunch: node {} of {}, {}{}]", e.message(), i + 1, nodes.size(),
                                      node.what, origin));
    }
    if (status != cudaSuccess) return emu::record(static_cast<cudaError_t>(status));
    std::lock_guard<std::mutex> lock(emu::g_capture_mutex);
    ++emu::g_graph_counters.nodes_replayed;
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (exec == nullptr) return emu::record(cudaErrorInvalidValue);
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (graph == nullptr) return emu::record(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}
