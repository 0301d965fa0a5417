// test_allocator.cpp - the caching allocator's reuse, stream separation, counters and its
// out-of-memory message, over a host-memory backing that can be told to run out; and the real
// CUDA allocator when a GPU is present.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "engine/allocator.h"
#include "engine/tensor.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// Host memory with a capacity, counting what it is asked for.
class FakeBacking final : public BackingAllocator {
 public:
  FakeBacking(size_t capacity, int* syncs) : capacity_(capacity), syncs_(syncs) {}
  void* allocate(size_t nbytes) override {
    if (used_ + nbytes > capacity_) return nullptr;
    used_ += nbytes;
    void* p = std::malloc(nbytes);
    sizes_[p] = nbytes;
    return p;
  }
  void deallocate(void* ptr) override {
    used_ -= sizes_[ptr];
    sizes_.erase(ptr);
    std::free(ptr);
  }
  void synchronize() override { ++*syncs_; }
  std::string describe() const override { return "fake device has 1 KiB in all"; }
  const char* allocate_call() const override { return "fake_malloc"; }
  const char* free_call() const override { return "fake_free"; }

 private:
  size_t capacity_, used_ = 0;
  int* syncs_;
  std::map<void*, size_t> sizes_;
};

void* const kStreamA = reinterpret_cast<void*>(0x1);
void* const kStreamB = reinterpret_cast<void*>(0x2);

// FakeBacking that also records the hooks the CUDA emulation's memory book hears.
class HookedBacking final : public BackingAllocator {
 public:
  explicit HookedBacking(std::vector<std::string>* events) : events_(events) {}
  void* allocate(size_t nbytes) override { return std::malloc(nbytes); }
  void deallocate(void* ptr) override { std::free(ptr); }
  void synchronize() override {}
  std::string describe() const override { return ""; }
  const char* allocate_call() const override { return "malloc"; }
  const char* free_call() const override { return "free"; }
  void handed_out(void*, size_t nbytes) override { events_->push_back("out " + std::to_string(nbytes)); }
  void taken_back(void*) override { events_->push_back("back"); }

 private:
  std::vector<std::string>* events_;
};

// A CUDA graph's private pool (engine/cuda_graph.h): what the capture allocates is never handed to
// anyone else while the graph lives, since every replay writes it again.
TEST(CachingAllocator, PrivatePoolKeepsItsBlocksUntilReleased) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  int graph = 0;  // the pool's owner: any unique address
  void* before = alloc.allocate(1000, kStreamA);
  alloc.deallocate(before);  // cached for stream A before the capture
  alloc.begin_private_pool(&graph);
  void* in_pool = alloc.allocate(1000, kStreamA);
  EXPECT_NE(in_pool, before) << "a capture must not draw from the ordinary cache";
  alloc.deallocate(in_pool);
  void* reused = alloc.allocate(1000, kStreamA);
  EXPECT_EQ(reused, in_pool) << "within the capture, freed pool blocks are reused (the replay repeats that order)";
  alloc.deallocate(reused);
  alloc.end_private_pool();
  void* after = alloc.allocate(1000, kStreamA);
  EXPECT_EQ(after, before) << "after the capture, allocations come from the ordinary cache again";
  void* another = alloc.allocate(1000, kStreamA);
  EXPECT_NE(another, in_pool) << "the graph's block went to an ordinary tensor while the graph lives";
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved_bytes, 3 * 1024u) << "empty_cache gave back a block the graph still replays into";
  alloc.release_private_pool(&graph);
  alloc.deallocate(after);
  alloc.deallocate(another);
  alloc.empty_cache();
  EXPECT_EQ(alloc.stats().reserved_bytes, 0u) << "a released pool's blocks are ordinary cache again";
}

// The pool belongs to the capturing thread: another thread (the data loader) allocates as usual.
TEST(CachingAllocator, PrivatePoolServesOnlyTheCapturingThread) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  int graph = 0;
  void* cached = alloc.allocate(1000, kStreamA);
  alloc.deallocate(cached);
  alloc.begin_private_pool(&graph);
  void* other_thread = nullptr;
  std::thread([&] { other_thread = alloc.allocate(1000, kStreamA); }).join();
  EXPECT_EQ(other_thread, cached) << "another thread's allocation went to the capture's pool";
  void* mine = alloc.allocate(1000, kStreamA);
  EXPECT_NE(mine, cached);
  alloc.end_private_pool();
  alloc.deallocate(mine);
  alloc.deallocate(other_thread);
  alloc.release_private_pool(&graph);
  EXPECT_THROW(
      {
        alloc.begin_private_pool(&graph);
        alloc.begin_private_pool(&syncs);
      },
      Error)
      << "captures do not nest";
  alloc.end_private_pool();
  alloc.release_private_pool(&graph);
  alloc.release_private_pool(&syncs);
}

// The memory book of the CUDA emulation hears of a pool block once, at its whole size, and of its
// return only when the pool is released: between, the graph may use it at any extent it had.
TEST(CachingAllocator, PrivatePoolBlocksStayHandedOutForTheBook) {
  std::vector<std::string> events;
  CachingAllocator alloc("hooked", std::make_unique<HookedBacking>(&events));
  int graph = 0;
  alloc.begin_private_pool(&graph);
  void* p = alloc.allocate(1000, kStreamA);
  alloc.deallocate(p);
  void* q = alloc.allocate(600, kStreamA);
  alloc.end_private_pool();
  EXPECT_EQ(q, p);
  EXPECT_EQ(events, std::vector<std::string>{"out 1024"});
  alloc.release_private_pool(&graph);  // q is still handed out: nothing to say yet
  EXPECT_EQ(events, std::vector<std::string>{"out 1024"});
  alloc.deallocate(q);
  EXPECT_EQ(events, (std::vector<std::string>{"out 1024", "back"}));
  void* r = alloc.allocate(900, kStreamA);  // an ordinary block now: its request is its extent
  EXPECT_EQ(r, p);
  EXPECT_EQ(events, (std::vector<std::string>{"out 1024", "back", "out 900"}));
  alloc.deallocate(r);
}

TEST(CachingAllocator, ReusesFreedBlocksOfTheSameStream) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  void* p = alloc.allocate(1000, kStreamA);
  alloc.deallocate(p);
  void* q = alloc.allocate(900, kStreamA);  // rounds to the same 1024-byte block
  EXPECT_EQ(p, q) << "a freed block is handed out again";
  const AllocatorStats s = alloc.stats();
  EXPECT_EQ(s.backing_allocations, 1);
  EXPECT_EQ(s.requests, 2);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.allocated_bytes, 1024u);
  EXPECT_EQ(s.reserved_bytes, 1024u);
  alloc.deallocate(q);
}

TEST(CachingAllocator, NeverSharesBlocksAcrossStreams) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  void* p = alloc.allocate(512, kStreamA);
  alloc.deallocate(p);
  void* q = alloc.allocate(512, kStreamB);
  EXPECT_NE(p, q) << "work on stream B could overtake work on stream A still using the block";
  EXPECT_EQ(alloc.stats().backing_allocations, 2);
  alloc.deallocate(q);
}

TEST(CachingAllocator, BestFitButNeverTwiceTheSize) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  void* big = alloc.allocate(4096, kStreamA);
  void* mid = alloc.allocate(2048, kStreamA);
  alloc.deallocate(big);
  alloc.deallocate(mid);
  EXPECT_EQ(alloc.allocate(1536, kStreamA), mid) << "the smallest block that fits";
  void* fresh = alloc.allocate(1024, kStreamA);
  EXPECT_NE(fresh, big) << "a 4096-byte block is not spent on 1024 bytes";
  EXPECT_EQ(alloc.stats().backing_allocations, 3);
  alloc.deallocate(mid);
  alloc.deallocate(fresh);
}

TEST(CachingAllocator, CountsPeakAndResetsIt) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs));
  void* a = alloc.allocate(512, kStreamA);
  void* b = alloc.allocate(1024, kStreamA);
  alloc.deallocate(a);
  AllocatorStats s = alloc.stats();
  EXPECT_EQ(s.allocated_bytes, 1024u);
  EXPECT_EQ(s.peak_allocated_bytes, 1536u);
  EXPECT_EQ(s.reserved_bytes, 1536u);
  alloc.reset_peak();
  EXPECT_EQ(alloc.stats().peak_allocated_bytes, 1024u);
  alloc.deallocate(b);
  alloc.empty_cache();
  s = alloc.stats();
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.backing_frees, 2);
  EXPECT_EQ(syncs, 1) << "the cache is released only after the stream work is done";
  EXPECT_NE(alloc.stats_string().find("2 fake_malloc calls"), std::string::npos) << alloc.stats_string();
}

TEST(CachingAllocator, ReleasesItsCacheBeforeReportingOutOfMemory) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(4096, &syncs));
  void* a = alloc.allocate(3000, kStreamA);
  alloc.deallocate(a);  // cached: 3072 bytes held
  void* b = alloc.allocate(2048, kStreamB);  // fits only once the cache is given back
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(alloc.stats().backing_frees, 1);
  try {
    alloc.allocate(10000, kStreamA);
    FAIL() << "10000 bytes cannot fit in 4096";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of memory"), std::string::npos) << what;
    EXPECT_NE(what.find("9.77 KiB (10000 bytes)"), std::string::npos) << "names the size asked for: " << what;
    EXPECT_NE(what.find("allocated 2.00 KiB"), std::string::npos) << "prints the counters: " << what;
    EXPECT_NE(what.find("fake device has 1 KiB"), std::string::npos) << "and what the device says: " << what;
  }
  alloc.deallocate(b);
}

TEST(CachingAllocator, ACapOnCachedBytesReleasesTheCache) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(1 << 20, &syncs), /*max_cached_bytes=*/4096);
  void* a = alloc.allocate(3072, kStreamA);
  void* b = alloc.allocate(2048, kStreamA);
  alloc.deallocate(a);  // 3072 cached: under the cap
  EXPECT_EQ(alloc.stats().reserved_bytes, 5120u);
  alloc.deallocate(b);  // 5120 cached: over it, so everything cached goes back
  EXPECT_EQ(alloc.stats().reserved_bytes, 0u);
  EXPECT_EQ(alloc.stats().backing_frees, 2);
}

TEST(CachingAllocator, RejectsForeignPointersAndZeroSizes) {
  int syncs = 0;
  CachingAllocator alloc("fake", std::make_unique<FakeBacking>(4096, &syncs));
  EXPECT_EQ(alloc.allocate(0, kStreamA), nullptr);
  int local = 0;
  EXPECT_THROW(alloc.deallocate(&local), Error);
  void* p = alloc.allocate(10, kStreamA);
  alloc.deallocate(p);
  EXPECT_THROW(alloc.deallocate(p), Error) << "a double free is caught";
}

TEST(HostMemory, CpuTensorsReuseCachedBlocks) {
#if defined(ENGINE_SANITIZE)
  GTEST_SKIP() << "the sanitized build gives every CPU tensor its own exact block (engine/allocator.h)";
#endif
  { Tensor warm = Tensor::empty({12345}); }
  const AllocatorStats before = host_allocator().stats();
  for (int i = 0; i < 5; ++i) Tensor t = Tensor::empty({12345});
  EXPECT_EQ(host_allocator().stats().backing_allocations, before.backing_allocations);
  EXPECT_EQ(host_allocator().stats().cache_hits - before.cache_hits, 5);
}

TEST(HostMemory, OutOfMemoryNamesTheSize) {
  try {
    Tensor::empty({int64_t{1} << 50});  // 4 PiB
    FAIL() << "4 PiB of host memory cannot be allocated";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("out of memory"), std::string::npos) << what;
    EXPECT_NE(what.find("4096.00 TiB"), std::string::npos) << what;
#if !defined(ENGINE_SANITIZE)  // there CPU tensors bypass the cache, whose counters this message lists
    EXPECT_NE(what.find("aligned_alloc calls"), std::string::npos) << what;
#endif
  }
  EXPECT_THROW(Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}), Error) << "the byte count overflows";
  EXPECT_NO_THROW(Tensor::zeros({16})) << "the allocator works after an OOM";
}

TEST(HostMemory, AlignedAndPinnedFallback) {
  void* p = host_allocate(100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHostAlignment, 0u);
  host_free(p);
  HostBuffer buffer = pinned_allocate(4096);
  ASSERT_NE(buffer.data, nullptr);
  EXPECT_EQ(buffer.pinned, cuda_device_count() > 0) << "page-locked only when a GPU can use it";
  static_cast<char*>(buffer.data)[4095] = 1;
  pinned_free(buffer);
}

TEST(CudaAllocator, TensorsReuseCachedBlocks) {
  SKIP_WITHOUT_CUDA();
  CachingAllocator& alloc = cuda_allocator(0);
  { Tensor warm = Tensor::empty({1000, 1000}, DType::f32, Device::cuda()); }
  const AllocatorStats before = alloc.stats();
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({1000, 1000}, DType::f32, Device::cuda());
  const AllocatorStats after = alloc.stats();
  EXPECT_EQ(after.backing_allocations, before.backing_allocations) << "no cudaMalloc once the cache is warm";
  EXPECT_EQ(after.cache_hits - before.cache_hits, 10);
  EXPECT_GE(after.peak_allocated_bytes, 4000000u);
}

TEST(CudaAllocator, OutOfMemoryNamesTheSize) {
  SKIP_WITHOUT_CUDA();
  try {
    Tensor::empty({int64_t{1} << 40}, DType::f32, Device::cuda());  // 4 TiB
    FAIL() << "4 TiB cannot be allocated";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("4.00 TiB"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaMalloc"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(Tensor::zeros({16}, DType::f32, Device::cuda())) << "the device is usable after an OOM";
}

}  // namespace
}  // namespace engine::testing
