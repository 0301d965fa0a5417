// device_memory.h - the emulated device of the CUDA emulation build (see cuda_runtime.h): its
// limits, the book of its memory, and its queue of asynchronous copies.
//
// Memory. Every cudaMalloc block is host memory with a guard zone behind it. The block's live
// extent is what its current user asked for: cudaMalloc's size, or, for a block the caching
// allocator hands out again, that request (allocator.h's BackingAllocator hooks report it); a block
// the caching allocator took back is freed for the book, and a kernel or copy that still uses it is
// refused. Memory is filled with NaN bytes (0xff) when handed out and when given back, so a kernel
// that reads what nobody wrote computes NaN. Everything from the end of the live extent to the end
// of the guard zone holds NaN words whose payload hashes their address: a read past the end gives
// NaN, and check_guard_zones() finds a write past the end after every launch.
//
// Copies. cudaMemcpyAsync does not copy at once: the copy waits in the queue until the next thing
// that would follow it on the GPU (a launch, another copy or memset, a library call, a stream
// synchronisation, a free; an event wait runs the copies queued before the event), and a
// device-to-host destination holds NaN meanwhile. So host code that reads a copy's destination, or
// rewrites its source, before synchronising sees what a GPU would give it. As on a GPU, only copies
// between device memory and pinned host memory are asynchronous: one from or to pageable memory is
// done when the call returns.
//
// Stream capture (CUDA graphs). While a host thread captures a stream (cudaStreamBeginCapture), the
// work issued to that stream is recorded, not run, as on a GPU: kernel launches (their arguments
// copied by value, the configuration checked at once), memsets, copies between device memory and
// device or pinned memory (the pinned side is read or written at replay), event records, and the
// library stand-ins, which do not know their stream and follow the calling thread's capture.
// cudaGraphLaunch replays the nodes in order on the calling thread, each checked as when it runs at
// once, and a fault names the node. The capturing thread may not wait for or read the captured work,
// which has not run: cudaStreamSynchronize of the capturing stream (or the legacy stream),
// cudaEventSynchronize of an event recorded in the capture, a synchronous cudaMemcpy, a copy from or
// to pageable host memory, cudaFree and cudaFreeHost (they synchronise), issuing work to another
// stream (the emulation does not fork captures), and cudaGraphLaunch (graphs do not nest) return
// cudaErrorStreamCaptureUnsupported and invalidate the capture: cudaStreamEndCapture then returns
// cudaErrorStreamCaptureInvalidated and no graph. Another stream waiting for an event recorded in a
// capture in progress is refused the same way (on a GPU it would join the capture). cudaMalloc is
// allowed. Work of other threads on other streams runs as before. The three capture modes behave as
// cudaStreamCaptureModeThreadLocal (for Relaxed, stricter than a GPU), and a thread captures one
// stream at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

struct EmulatedStream;  // cudaStream_t (cuda_runtime.h)

namespace engine::cuda::emulation {

// ---- the device: an H100 SXM (compute capability 9.0) ----
constexpr size_t kTotalMemory = size_t{80} << 30;
constexpr int kMultiProcessors = 132;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedPerBlock = 48 * 1024;        // a block's shared memory without the opt-in
constexpr size_t kSharedPerBlockOptin = 227 * 1024;  // with cudaFuncSetAttribute

// ---- memory ----
constexpr size_t kGuardBytes = 256;
constexpr unsigned char kUnwrittenByte = 0xff;  // NaN in f32, f64 and bf16; -1 in integers

void* allocate_device(size_t nbytes);  // nullptr when out of (emulated) memory
bool free_device(void* ptr);           // false when ptr is not a device block
void* allocate_pinned(size_t nbytes);
bool free_pinned(void* ptr);
size_t device_bytes_in_use();

void note_handed_out(void* ptr, size_t nbytes);
void note_taken_back(void* ptr);

enum class Space { Device, Pinned, Host };
// Where [ptr, ptr + nbytes) lies. A device or pinned range must lie inside the live extent of a
// block in use; `problem` says why it does not (left empty when the range is fine or host memory).
Space classify(const void* ptr, size_t nbytes, std::string* problem);
// Whether a kernel may be handed `ptr` (null, or inside or one past a device or pinned block in
// use); `problem` says why not.
bool kernel_may_use(const void* ptr, std::string* problem);
// After a launch or a library stand-in: throws engine::Error naming `what`, the buffer and the
// first overwritten byte when a guard zone changed (and restores the zone, so that later launches
// are not blamed for it).
void check_guard_zones(const char* what);
// Restores every guard zone without a word: after a fault, whose launch is reported already.
void repair_guard_zones();

// A CPU stand-in for a cuBLAS, cuDNN or CUB call (the *_emulated.cpp files) runs the queued copies,
// then checks each operand: device memory in use of at least `nbytes`, as the library would need
// it. Throws naming the call and the operand otherwise.
void check_library_operand(const char* call, const char* operand, const void* ptr, size_t nbytes);

// ---- the copy queue ----
// Queues a copy; with `to_host` the destination reads NaN until the copy runs.
void enqueue_copy(void* dst, const void* src, size_t nbytes, bool to_host);
uint64_t queue_position();  // how many copies were ever queued: an event records it
void run_queued_copies_through(uint64_t position);
void run_queued_copies();

// The runtime's last error, which cudaGetLastError() returns and clears (a failed launch sets it).
void set_last_error(int status);

// ---- stream capture ----
// route_work's answer for work to record into the stream's capture.
constexpr int kRecord = -1;
// What becomes of work that the calling thread issues to `stream`: cudaSuccess, run it now; kRecord,
// hand it to record_work(); otherwise the CUDA error to return (made the last error already): the
// capture refused the work and is invalidated, or was invalidated before.
int route_work(EmulatedStream* stream);
// Appends `work` (it returns a CUDA status) to the capture of `stream`, which route_work() answered
// kRecord for. `what`, `file` and `line` (file may be null) name the node in a fault at replay.
void record_work(EmulatedStream* stream, const char* what, const char* file, int line, std::function<int()> work);
// A library stand-in does not know its stream: while the calling thread captures, its call belongs
// to that capture. Records `work` there and returns true; returns false when the thread does not
// capture (run it now). Throws when the capture was invalidated, as the library would fail the call.
bool record_library_call(const char* call, std::function<void()> work);

struct GraphCounters {
  int64_t graphs_captured = 0;  // successful cudaStreamEndCapture calls
  int64_t nodes_recorded = 0;
  int64_t replays = 0;  // cudaGraphLaunch calls that began replaying
  int64_t nodes_replayed = 0;
};
GraphCounters graph_counters();

}  // namespace engine::cuda::emulation
