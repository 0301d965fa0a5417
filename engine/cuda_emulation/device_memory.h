// device_memory.h - the emulation build's book of device and pinned memory (see cuda_runtime.h).
//
// Every cudaMalloc block is host memory with a guard zone behind it. The block's live extent is
// what its current user asked for: cudaMalloc's size, or, for a block the caching allocator hands
// out again, that request (allocator.h's BackingAllocator hooks report it). Memory is filled with
// NaN bytes (0xff) when handed out and when given back, so a kernel that reads what nobody wrote
// computes NaN; everything from the end of the live extent to the end of the guard zone holds a
// fixed pattern that check_guard_zones() verifies after every launch, so a kernel that writes past
// the end of its buffer is caught at the launch that did it.
#pragma once

#include <cstddef>
#include <string>

namespace engine::cuda::emulation {

constexpr size_t kGuardBytes = 256;
constexpr unsigned char kUnwrittenByte = 0xff;  // NaN in f32, f64 and bf16; -1 in integers

void* allocate_device(size_t nbytes);  // nullptr when out of (emulated) memory
bool free_device(void* ptr);           // false when ptr is not a live device block
void* allocate_pinned(size_t nbytes);
bool free_pinned(void* ptr);
size_t device_bytes_in_use();

void note_handed_out(void* ptr, size_t nbytes);
void note_taken_back(void* ptr);

enum class Space { Device, Pinned, Host };
// Where [ptr, ptr + nbytes) lies. Device and pinned ranges must lie inside one block's live
// extent; `problem` says why not (empty when the range is fine or plain host memory).
Space classify(const void* ptr, size_t nbytes, std::string* problem);
// Whether a kernel may be handed `ptr`: inside (or one past) a device or pinned block.
bool kernel_may_use(const void* ptr);
// The runtime's last error, which cudaGetLastError() returns and clears (a failed launch sets it).
void set_last_error(int status);

// Throws engine::Error naming the block and the first overwritten byte when a guard zone changed.
void check_guard_zones(const char* kernel);

}  // namespace engine::cuda::emulation
