// allocator.h - host memory, pinned host memory, and the stream-ordered caching allocator.
//
// Host memory is 64-byte aligned (a cache line, an AVX-512 vector). Pinned memory is page-locked
// through cudaHostAlloc so copies to the GPU can be asynchronous; where no GPU is usable it falls
// back to ordinary aligned memory and says so (HostBuffer::pinned is false).
//
// CachingAllocator keeps freed device blocks and hands them out again, so a training step that
// asks for the same sizes every iteration stops calling cudaMalloc after the first one.
// It is stream-ordered: a freed block goes back to the pool of the stream it was allocated for and
// is reused only for that stream, where every later kernel runs after every earlier one, so no
// synchronisation is needed. Its logic knows nothing of CUDA: it draws from a BackingAllocator
// (cudaMalloc/cudaFree for the GPU; a plain host one in the tests).
//
// Size policy: requests are rounded up to 512 bytes; a free block of the same stream is reused
// when it is at least the rounded size and less than twice it (best fit); otherwise a new block is
// drawn. When the backing allocator fails, the cache is released and the request retried once;
// if that fails too the error names the size asked for and every counter. An optional cap on the
// cached (free but held) bytes releases the cache whenever a free would exceed it: the host
// allocator uses one, since images of many sizes would otherwise pile up.
//
// Private pools (CUDA graphs, engine/cuda_graph.h). A captured graph replays its kernels on the
// very addresses they had at capture, long after the tensors of the capture were freed. So while a
// thread captures, its allocations come from a pool of their own: blocks freed during the capture
// are reused within it (the replay repeats the same order, so that reuse stays correct), and no
// block of the pool goes to anyone else, or back to the backing allocator, until the graph is
// destroyed and the pool released. A pool block is handed out to the backing allocator's hooks at
// its whole rounded size, once: the graph may use it at any extent it had during the capture.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

namespace engine {

constexpr size_t kHostAlignment = 64;

// Aligned host memory; throws engine::Error naming the size when the machine has none left.
void* host_allocate(size_t nbytes);
void host_free(void* ptr);

// Page-locked host memory when a GPU is usable, ordinary aligned memory otherwise.
struct HostBuffer {
  void* data = nullptr;
  size_t nbytes = 0;
  bool pinned = false;
};
HostBuffer pinned_allocate(size_t nbytes);
void pinned_free(const HostBuffer& buffer);

// Where a CachingAllocator draws its memory from.
class BackingAllocator {
 public:
  virtual ~BackingAllocator() = default;
  virtual void* allocate(size_t nbytes) = 0;  // nullptr when out of memory; never throws for that
  virtual void deallocate(void* ptr) = 0;
  // Waits until no queued work can still touch memory handed out (before blocks are released).
  virtual void synchronize() = 0;
  // Extra facts for the out-of-memory message, such as the device's free and total memory.
  virtual std::string describe() const = 0;
  // The call that draws memory, for the counters' names ("cudaMalloc").
  virtual const char* allocate_call() const = 0;
  virtual const char* free_call() const = 0;
  // A block drawn earlier is handed out for a request of `nbytes`, or comes back from its user.
  // The CUDA emulation (engine/cuda_emulation/device_memory.h) fills and guards it; others ignore it.
  virtual void handed_out(void* /*ptr*/, size_t /*nbytes*/) {}
  virtual void taken_back(void* /*ptr*/) {}
};

struct AllocatorStats {
  size_t allocated_bytes = 0;       // in blocks handed out now
  size_t reserved_bytes = 0;        // drawn from the backing allocator now (handed out + cached)
  size_t peak_allocated_bytes = 0;  // since creation or reset_peak()
  size_t peak_reserved_bytes = 0;
  int64_t backing_allocations = 0;  // cudaMalloc calls
  int64_t backing_frees = 0;        // cudaFree calls
  int64_t requests = 0;             // allocate() calls
  int64_t cache_hits = 0;           // requests served from the cache
};

class CachingAllocator {
 public:
  static constexpr size_t kRounding = 512;

  static constexpr size_t kNoCap = ~size_t{0};

  CachingAllocator(std::string name, std::unique_ptr<BackingAllocator> backing, size_t max_cached_bytes = kNoCap);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least nbytes for use on `stream` (an opaque handle: cudaStream_t on the GPU).
  // Zero bytes gives nullptr.
  void* allocate(size_t nbytes, void* stream);
  // Returns a block to the cache of its stream. The pointer must come from allocate().
  void deallocate(void* ptr);
  // Gives every cached block back to the backing allocator (after synchronize()); the blocks of
  // private pools stay, and nothing is given back while a capture is under way.
  void empty_cache();

  // Until end_private_pool(), this thread's allocations come from the private pool `pool` (any
  // unique address: the graph that owns it). Other threads allocate as before, but one pool is
  // begun at a time, in the whole process (captures do not nest or overlap).
  void begin_private_pool(const void* pool);
  void end_private_pool();
  // The pool's owner is gone: its free blocks join the ordinary cache of their stream, and its
  // blocks still handed out will when they are freed.
  void release_private_pool(const void* pool);

  AllocatorStats stats() const;
  void reset_peak();
  // One line: "cuda:0 allocator: allocated 1.50 GiB (peak 2.00 GiB), reserved ..., 3 cudaMalloc calls, ..."
  std::string stats_string() const;
  const std::string& name() const { return name_; }

 private:
  struct Block {
    size_t size;
    void* stream;
    const void* pool;  // the private pool it belongs to, or nullptr
  };
  // The key of the free list a block returns to: its pool's, else its stream's.
  static void* cache_key(const Block& block) {
    return block.pool ? const_cast<void*>(block.pool) : block.stream;
  }
  void release_cached_locked();
  std::string stats_string_locked() const;

  std::string name_;
  std::unique_ptr<BackingAllocator> backing_;
  size_t max_cached_bytes_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;  // handed out: pointer -> block
  // free: (stream or private pool, size) -> (pointer, block)
  std::multimap<std::pair<void*, size_t>, std::pair<void*, Block>> cached_;
  std::set<const void*> pools_;         // private pools not yet released
  const void* capture_pool_ = nullptr;  // the pool of capture_thread_'s allocations, while one is begun
  std::thread::id capture_thread_;
  AllocatorStats stats_;
};

// "1.50 GiB", "512 B": sizes as people read them.
std::string format_bytes(size_t nbytes);

// The caching allocator of host memory that CPU tensors use: a training step's buffers are
// reused instead of being mapped and faulted in afresh (large allocations go to mmap in glibc).
CachingAllocator& host_allocator();

// A CPU tensor's storage: from host_allocator(), except in the sanitized build (ENGINE_SANITIZE),
// where every tensor gets exactly its bytes from host_allocate, so that AddressSanitizer sees a
// read past a tensor's end or after its release; a cached block, rounded up and reused, hides both.
void* tensor_host_allocate(size_t nbytes);
void tensor_host_free(void* ptr);

// The caching allocator of a GPU (CUDA backend only; throws otherwise), and the two calls tensor
// storage uses: a block for the device's engine stream, and its return to the cache.
CachingAllocator& cuda_allocator(int device);
void* cuda_allocate(int device, size_t nbytes);
void cuda_free(int device, void* ptr);

// Temporary device memory of `count` elements of T for a kernel launch: drawn from the device's
// caching allocator and returned to it when it goes out of scope (stream-ordered, so after the
// kernels queued before that). Null when count is 0. Every op's CUDA scratch buffer is one of these.
template <typename T>
struct CudaScratch {
  int device;
  size_t count;
  T* ptr;
  CudaScratch(int device_, size_t count_)
      : device(device_), count(count_), ptr(count_ ? static_cast<T*>(cuda_allocate(device_, count_ * sizeof(T))) : nullptr) {}
  ~CudaScratch() {
    if (ptr) cuda_free(device, ptr);
  }
  CudaScratch(const CudaScratch&) = delete;
  CudaScratch& operator=(const CudaScratch&) = delete;
  size_t bytes() const { return count * sizeof(T); }
};

}  // namespace engine
