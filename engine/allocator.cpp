// allocator.cpp - host allocation and the caching allocator's bookkeeping (no CUDA here).
#include "engine/allocator.h"

#include <fmt/format.h>

#include <cstdlib>

#include "engine/check.h"
#include "engine/device.h"

namespace engine {

std::string format_bytes(size_t nbytes) {
  const double b = static_cast<double>(nbytes);
  if (b >= 1024.0 * 1024 * 1024 * 1024) return fmt::format("{:.2f} TiB", b / (1024.0 * 1024 * 1024 * 1024));
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.2f} KiB", b / 1024.0);
  return fmt::format("{} B", nbytes);
}

void* host_allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  // posix_memalign takes any size (aligned_alloc wants a multiple of the alignment), so the block
  // is exactly what was asked for and a sanitizer sees its end.
  void* ptr = nullptr;
  ENGINE_CHECK(posix_memalign(&ptr, kHostAlignment, nbytes) == 0 && ptr != nullptr,
               "host out of memory: asked for {} ({} bytes) of {}-byte aligned memory and the "
               "system refused; reduce the batch size or the number of loader workers",
               format_bytes(nbytes), nbytes, kHostAlignment);
  return ptr;
}

void host_free(void* ptr) { std::free(ptr); }

namespace {
class HostBacking final : public BackingAllocator {
 public:
  void* allocate(size_t nbytes) override {
    return std::aligned_alloc(kHostAlignment, (nbytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment);
  }
  void deallocate(void* ptr) override { std::free(ptr); }
  void synchronize() override {}
  std::string describe() const override { return "the host refused more memory"; }
  const char* allocate_call() const override { return "aligned_alloc"; }
  const char* free_call() const override { return "free"; }
};
}  // namespace

CachingAllocator& host_allocator() {
  // Never destroyed: tensors held in static objects may be freed after it would be.
  constexpr size_t kMaxCachedHostBytes = size_t{2} << 30;  // 2 GiB
  static CachingAllocator* allocator =
      new CachingAllocator("cpu", std::make_unique<HostBacking>(), kMaxCachedHostBytes);
  return *allocator;
}

void* tensor_host_allocate(size_t nbytes) {
#if defined(ENGINE_SANITIZE)
  return host_allocate(nbytes);
#else
  return host_allocator().allocate(nbytes, nullptr);
#endif
}

void tensor_host_free(void* ptr) {
#if defined(ENGINE_SANITIZE)
  host_free(ptr);
#else
  host_allocator().deallocate(ptr);
#endif
}

CachingAllocator::CachingAllocator(std::string name, std::unique_ptr<BackingAllocator> backing,
                                   size_t max_cached_bytes)
    : name_(std::move(name)), backing_(std::move(backing)), max_cached_bytes_(max_cached_bytes) {}

CachingAllocator::~CachingAllocator() {
  // Blocks still handed out belong to tensors that outlive us (static teardown); leave them.
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [key, entry] : cached_) backing_->deallocate(entry.first);
  cached_.clear();
}

void* CachingAllocator::allocate(size_t nbytes, void* stream) {
  if (nbytes == 0) return nullptr;
  const size_t size = (nbytes + kRounding - 1) / kRounding * kRounding;
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.requests++;
  const void* pool = capture_pool_ && capture_thread_ == std::this_thread::get_id() ? capture_pool_ : nullptr;
  Block block{size, stream, pool};

  // Best fit among the free blocks of this stream (or pool): the smallest that is large enough and
  // less than twice the request (so a huge block is never spent on a small tensor).
  void* ptr = nullptr;
  auto it = cached_.lower_bound({cache_key(block), size});
  if (it != cached_.end() && it->first.first == cache_key(block) && it->first.second < 2 * size) {
    ptr = it->second.first;
    block.size = it->first.second;
    cached_.erase(it);
    stats_.cache_hits++;
  } else {
    ptr = backing_->allocate(size);
    if (ptr == nullptr) {  // out of memory: give the cache back and try once more
      release_cached_locked();
      ptr = backing_->allocate(size);
    }
    ENGINE_CHECK(ptr != nullptr,
                 "out of memory: asked for {} ({} bytes) and {} could not provide it {}. {}. {}. Reduce the batch "
                 "size (-b) or the image size{}",
                 format_bytes(nbytes), nbytes, name_,
                 capture_pool_ ? "while a CUDA graph is being captured (its pool cannot use the cache)"
                               : "after releasing its cache",
                 stats_string_locked(), backing_->describe(), capture_pool_ ? ", or run with --cuda-graphs off" : "");
    stats_.backing_allocations++;
    stats_.reserved_bytes += size;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    if (pool) backing_->handed_out(ptr, size);  // once, whole: see the header
  }
  live_.emplace(ptr, block);
  if (!pool) backing_->handed_out(ptr, nbytes);
  stats_.allocated_bytes += block.size;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return ptr;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  ENGINE_CHECK(it != live_.end(),
               "{}: deallocate({}) of a pointer it never handed out (or freed twice)", name_, ptr);
  const Block block = it->second;
  live_.erase(it);
  if (!block.pool) backing_->taken_back(ptr);  // a pool's block stays in its graph's use
  stats_.allocated_bytes -= block.size;
  cached_.emplace(std::make_pair(cache_key(block), block.size), std::make_pair(ptr, block));
  if (stats_.reserved_bytes - stats_.allocated_bytes > max_cached_bytes_) release_cached_locked();
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

void CachingAllocator::begin_private_pool(const void* pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  ENGINE_CHECK(pool != nullptr && capture_pool_ == nullptr,
               "{}: begin_private_pool({}) while {} is begun; end the capture that began it first", name_, pool,
               capture_pool_);
  pools_.insert(pool);
  capture_pool_ = pool;
  capture_thread_ = std::this_thread::get_id();
}

void CachingAllocator::end_private_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  capture_pool_ = nullptr;
}

void CachingAllocator::release_private_pool(const void* pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pools_.erase(pool) == 0) return;
  if (capture_pool_ == pool) capture_pool_ = nullptr;
  for (auto& [ptr, block] : live_)
    if (block.pool == pool) block.pool = nullptr;  // taken back through the ordinary path when freed
  for (auto it = cached_.begin(); it != cached_.end();) {
    if (it->second.second.pool != pool) {
      ++it;
      continue;
    }
    auto [ptr, block] = it->second;
    it = cached_.erase(it);
    backing_->taken_back(ptr);
    block.pool = nullptr;
    cached_.emplace(std::make_pair(cache_key(block), block.size), std::make_pair(ptr, block));
  }
}

void CachingAllocator::release_cached_locked() {
  // Not during a capture: waiting for the device and freeing are refused while a stream captures
  // (a free from a tensor's destructor would then end the process). An out-of-memory inside a
  // capture says so (allocate's message).
  if (capture_pool_) return;
  bool synchronized = false;
  for (auto it = cached_.begin(); it != cached_.end();) {
    if (it->second.second.pool) {  // a graph may still replay into it
      ++it;
      continue;
    }
    if (!synchronized) backing_->synchronize();
    synchronized = true;
    backing_->deallocate(it->second.first);
    stats_.backing_frees++;
    stats_.reserved_bytes -= it->first.second;
    it = cached_.erase(it);
  }
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

std::string CachingAllocator::stats_string() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_string_locked();
}

std::string CachingAllocator::stats_string_locked() const {
  return fmt::format(
      "{} allocator: allocated {} (peak {}), reserved {} (peak {}), {} {} calls, {} {} calls, "
      "{} requests, {} cache hits",
      name_, format_bytes(stats_.allocated_bytes), format_bytes(stats_.peak_allocated_bytes),
      format_bytes(stats_.reserved_bytes), format_bytes(stats_.peak_reserved_bytes), stats_.backing_allocations,
      backing_->allocate_call(), stats_.backing_frees, backing_->free_call(), stats_.requests, stats_.cache_hits);
}

#if !ENGINE_WITH_CUDA
// A build without CUDA: pinned memory is ordinary memory, and asking for GPU memory is an error.
HostBuffer pinned_allocate(size_t nbytes) { return {host_allocate(nbytes), nbytes, false}; }
void pinned_free(const HostBuffer& buffer) { host_free(buffer.data); }
CachingAllocator& cuda_allocator(int device) {
  require_cuda_device(Device::cuda(device), "the CUDA allocator");  // throws: no CUDA backend
  std::abort();
}
void* cuda_allocate(int device, size_t) {
  require_cuda_device(Device::cuda(device), "allocating GPU memory");  // throws: no CUDA backend
  return nullptr;
}
void cuda_free(int, void*) {}
#endif

}  // namespace engine
