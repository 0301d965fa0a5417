// simt.cpp - the block scheduler of the CUDA emulation (see simt.h for what it guarantees).
//
// A block's threads are run by "runner" fibers. A runner takes the next thread that has not
// started, calls the kernel for it, and when the thread returns takes the next one; when the
// thread reaches a synchronisation point instead, the runner records what the thread waits for and
// switches back to the scheduler, staying with that thread until it is resumed, and the scheduler
// starts a new runner for the threads not yet started. When nothing can run, the scheduler
// completes what can be completed (a barrier every live thread reached, an __activemask of a warp
// whose lanes all wait) or reports the block as stuck.
#include <sys/mman.h>

#include <boost/context/fiber.hpp>

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/check.h"
#include "engine/cuda_emulation/cuda_runtime.h"
#include "engine/cuda_emulation/device_memory.h"

// The static __shared__ variables of every kernel (cuda_runtime.h puts them in this section); the
// linker defines these two symbols around it. Weak: a program with no kernel has no such section.
extern "C" {
extern unsigned char __start_engine_cuda_shared[] __attribute__((weak));
extern unsigned char __stop_engine_cuda_shared[] __attribute__((weak));
}

namespace engine::cuda::emulation {

namespace ctx = boost::context;

namespace {

constexpr int kWarp = 32;
constexpr size_t kStackBytes = 256 * 1024;  // kernels keep little on the stack; sanitizers need more
constexpr size_t kGuardPage = 4096;

// Fiber stacks, mapped once with a guard page below each (an overflow faults instead of writing
// over the neighbour) and reused by every block of every launch.
class StackPool {
 public:
  ctx::stack_context take() {
    void* base = nullptr;
    if (!free_.empty()) {
      base = free_.back();
      free_.pop_back();
    } else {
      base = mmap(nullptr, kStackBytes + kGuardPage, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      ENGINE_CHECK(base != MAP_FAILED, "CUDA emulation: could not map a {} KiB fiber stack", kStackBytes / 1024);
      mprotect(base, kGuardPage, PROT_NONE);
    }
    ctx::stack_context stack;
    stack.size = kStackBytes;
    stack.sp = static_cast<char*>(base) + kGuardPage + kStackBytes;
    return stack;
  }
  void give(ctx::stack_context& stack) { free_.push_back(static_cast<char*>(stack.sp) - kStackBytes - kGuardPage); }

 private:
  std::vector<void*> free_;
};
StackPool g_stacks;  // used under g_launch_mutex only

struct PooledStack {  // Boost.Context's StackAllocator
  ctx::stack_context allocate() { return g_stacks.take(); }
  void deallocate(ctx::stack_context& stack) noexcept { g_stacks.give(stack); }
};

enum class State : uint8_t { Unstarted, Running, Runnable, Waiting, Done };
enum class Wait : uint8_t { None, Barrier, Warp };

struct Runner;
struct Thread {
  uint3 idx{};
  int linear = 0;
  State state = State::Unstarted;
  Wait wait = Wait::None;
  Runner* runner = nullptr;
  Site site{};
  Collective kind{};
  unsigned mask = 0;
  uint64_t value = 0;
  int argument = 0;
  int width = kWarp;
  uint64_t result = 0;
};

struct Runner {
  ctx::fiber self;  // the suspended runner, held by the scheduler
  ctx::fiber sink;  // the scheduler, held by the running runner
  Thread* thread = nullptr;
};

const char* collective_name(Collective kind) {
  switch (kind) {
    case Collective::SyncWarp: return "__syncwarp";
    case Collective::ShflIdx: return "__shfl_sync";
    case Collective::ShflUp: return "__shfl_up_sync";
    case Collective::ShflDown: return "__shfl_down_sync";
    case Collective::ShflXor: return "__shfl_xor_sync";
    case Collective::Ballot: return "__ballot_sync";
    case Collective::ActiveMask: return "__activemask";
  }
  return "?";
}

std::string where(const Site& site) { return fmt::format("{}:{}", site.file, site.line); }

struct Launch {
  const char* name;
  KernelBody body;
  unsigned block[3];
  int threads;  // per block
};

std::mutex g_launch_mutex;
std::mutex g_attribute_mutex;
std::map<const void*, int> g_max_dynamic_shared;  // cudaFuncSetAttribute
Counters g_counters;
// The schedule seed: ENGINE_CUDA_EMULATION_SEED at start, then set_schedule_seed().
struct ScheduleSeed {
  std::atomic<uint64_t> value{0};
  std::string bad_text;  // an ENGINE_CUDA_EMULATION_SEED that is not a number, reported at the first launch
  ScheduleSeed() {
    const char* text = std::getenv("ENGINE_CUDA_EMULATION_SEED");
    if (text == nullptr || *text == '\0') return;
    char* end = nullptr;
    const unsigned long long parsed = std::strtoull(text, &end, 10);
    if (*end != '\0' || *text == '-')
      bad_text = text;
    else
      value = parsed;
  }
};
ScheduleSeed& schedule_seed_state() {
  static ScheduleSeed seed;
  return seed;
}
std::vector<unsigned char> g_dynamic_shared(kSharedPerBlockOptin + 64);

// The seed of one launch's order: from the schedule seed and the launch itself (kernel, geometry),
// not from what ran before, so that a failure under seed S replays when its test runs alone.
uint64_t launch_seed(uint64_t seed, const char* name, const unsigned grid[3], const unsigned block[3]) {
  if (seed == 0) return 0;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;  // FNV-1a
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xff)) * 0x100000001b3ull;
  };
  for (const char* c = name; *c; ++c) mix(static_cast<unsigned char>(*c));
  for (int i = 0; i < 3; ++i) mix((uint64_t{grid[i]} << 32) | block[i]);
  return h | 1;
}

class BlockRun;
BlockRun* g_block = nullptr;
Runner* g_runner = nullptr;

// The threads of one block and their scheduler.
class BlockRun {
 public:
  BlockRun(const Launch& launch, std::vector<Thread>& threads, std::mt19937_64* rng)
      : launch_(launch), threads_(threads), rng_(rng) {
    const int n = launch.threads;
    for (int i = 0; i < n; ++i) {
      Thread& t = threads_[i];
      t = Thread{};
      t.linear = i;
      t.idx = {static_cast<unsigned>(i % launch.block[0]), static_cast<unsigned>(i / launch.block[0] % launch.block[1]),
               static_cast<unsigned>(i / (launch.block[0] * launch.block[1]))};
    }
    if (rng_) {  // a thread order of its own for every block
      start_order_.resize(n);
      std::iota(start_order_.begin(), start_order_.end(), 0);
      std::shuffle(start_order_.begin(), start_order_.end(), *rng_);
    }
  }

  void run() {
    g_block = this;
    try {
      for (;;) {
        if (fault_) std::rethrow_exception(fault_);
        if (!runnable_.empty()) {
          Thread* t = pop_runnable();
          resume(t->runner, t);
        } else if (next_start_ < launch_.threads) {
          runners_.push_back(std::make_unique<Runner>());
          Runner* r = runners_.back().get();
          r->self = ctx::fiber(std::allocator_arg, PooledStack{}, [this, r](ctx::fiber&& sink) {
            return run_threads(r, std::move(sink));
          });
          resume(r, nullptr);
        } else if (done_ == launch_.threads) {
          break;
        } else {
          resolve_stall();
        }
      }
    } catch (...) {
      runners_.clear();  // destroying a suspended fiber unwinds its stack
      g_block = nullptr;
      throw;
    }
    runners_.clear();
    g_block = nullptr;
  }

  // ---- called on a thread's fiber ----
  Thread& current() { return *g_runner->thread; }

  void suspend() {
    Runner* r = g_runner;
    r->sink = std::move(r->sink).resume();
  }

  void arrive_at_barrier(Site site) {
    Thread& t = current();
    t.state = State::Waiting;
    t.wait = Wait::Barrier;
    t.site = site;
    suspend();
  }

  uint64_t arrive_at_collective(Collective kind, unsigned mask, uint64_t value, int argument, int width, Site site) {
    Thread& t = current();
    const int lane = t.linear % kWarp;
    if (kind != Collective::ActiveMask && !(mask & (1u << lane)))
      fail(fmt::format("{} at {}: thread {} (lane {}) calls it with mask {:#010x}, which leaves out its own lane; "
                       "a lane must name itself in the mask",
                       collective_name(kind), where(site), t.linear, lane, mask));
    if (width < 1 || width > kWarp || (width & (width - 1)) != 0)
      fail(fmt::format("{} at {}: width {} is not 1, 2, 4, 8, 16 or 32", collective_name(kind), where(site), width));
    if ((kind == Collective::ShflUp || kind == Collective::ShflDown || kind == Collective::ShflXor) &&
        (argument < 0 || argument >= kWarp))
      fail(fmt::format("{} at {}: thread {} shifts by {}; the GPU reads only the offset's low 5 bits, so keep it "
                       "from 0 to 31",
                       collective_name(kind), where(site), t.linear, argument));
    t.state = State::Waiting;
    t.wait = Wait::Warp;
    t.kind = kind;
    t.mask = mask;
    t.value = value;
    t.argument = argument;
    t.width = width;
    t.site = site;
    if (kind != Collective::ActiveMask) try_complete_warp(t);
    suspend();
    return t.result;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    ENGINE_THROW("CUDA emulation: kernel {}, block ({}, {}, {}){}: {}", launch_.name, blockIdx.x, blockIdx.y,
                 blockIdx.z, rng_ ? fmt::format(" (schedule seed {})", schedule_seed()) : std::string(), what);
  }

  ctx::fiber run_threads(Runner* r, ctx::fiber&& sink) {
    r->sink = std::move(sink);
    try {
      while (next_start_ < launch_.threads) {
        const int i = rng_ ? start_order_[next_start_] : next_start_;
        ++next_start_;
        Thread& t = threads_[i];
        t.runner = r;
        r->thread = &t;
        threadIdx = t.idx;
        t.state = State::Running;
        launch_.body.run(launch_.body.context);
        t.state = State::Done;
        ++done_;
        after_exit(t);
      }
    } catch (const ctx::detail::forced_unwind&) {
      throw;
    } catch (...) {
      if (!fault_) fault_ = std::current_exception();
    }
    r->thread = nullptr;
    return std::move(r->sink);
  }

  void resume(Runner* r, Thread* t) {
    g_runner = r;
    if (t) {
      threadIdx = t->idx;
      t->state = State::Running;
      t->wait = Wait::None;
    }
    r->self = std::move(r->self).resume();
    ++g_counters.context_switches;
  }

  Thread* pop_runnable() {
    if (rng_ && runnable_.size() > 1) {
      const size_t pick = std::uniform_int_distribution<size_t>(0, runnable_.size() - 1)(*rng_);
      std::swap(runnable_[pick], runnable_.back());
      Thread* t = runnable_.back();
      runnable_.pop_back();
      return t;
    }
    Thread* t = runnable_.front();
    runnable_.pop_front();
    return t;
  }

  void make_runnable(Thread& t) {
    t.state = State::Runnable;
    runnable_.push_back(&t);
  }

  // A lane exited: collectives of its warp that named it may now be complete.
  void after_exit(const Thread& t) {
    const int base = t.linear / kWarp * kWarp, lane = t.linear % kWarp;
    for (int i = base; i < std::min(base + kWarp, launch_.threads); ++i) {
      Thread& u = threads_[i];
      if (u.state == State::Waiting && u.wait == Wait::Warp && u.kind != Collective::ActiveMask &&
          (u.mask & (1u << lane)))
        try_complete_warp(u);
    }
  }

  // Completes the collective `t` waits at when every live lane named in its mask waits at the same
  // one; lanes that exited, or that the block does not have, are excused.
  void try_complete_warp(Thread& t) {
    const int base = t.linear / kWarp * kWarp;
    unsigned arrived = 0;
    for (int lane = 0; lane < kWarp; ++lane) {
      if (!(t.mask & (1u << lane)) || base + lane >= launch_.threads) continue;
      const Thread& u = threads_[base + lane];
      if (u.state == State::Done) continue;
      if (u.state != State::Waiting || u.wait != Wait::Warp || u.kind != t.kind || u.mask != t.mask) return;
      arrived |= 1u << lane;
    }
    uint64_t ballot = 0;
    for (int lane = 0; lane < kWarp; ++lane)
      if (arrived & (1u << lane)) ballot |= (threads_[base + lane].value != 0 ? 1ull : 0ull) << lane;
    for (int lane = 0; lane < kWarp; ++lane) {
      if (!(arrived & (1u << lane))) continue;
      Thread& u = threads_[base + lane];
      switch (u.kind) {
        case Collective::SyncWarp: u.result = 0; break;
        case Collective::Ballot: u.result = ballot; break;
        default: u.result = shuffle_source(u, arrived, base).value; break;
      }
    }
    for (int lane = 0; lane < kWarp; ++lane)
      if (arrived & (1u << lane)) make_runnable(threads_[base + lane]);
  }

  // The lane whose value a shuffle hands to `u`, with CUDA's rules for width and range.
  const Thread& shuffle_source(const Thread& u, unsigned arrived, int base) {
    const int lane = u.linear % kWarp, w = u.width, segment = lane / w * w;
    int src = lane;
    switch (u.kind) {
      case Collective::ShflIdx: src = segment + ((u.argument % w) + w) % w; break;
      case Collective::ShflUp: src = lane - u.argument >= segment ? lane - u.argument : lane; break;
      case Collective::ShflDown: src = lane + u.argument < segment + w ? lane + u.argument : lane; break;
      case Collective::ShflXor: src = (lane ^ u.argument) < segment + w ? (lane ^ u.argument) : lane; break;
      default: break;
    }
    if (src < 0 || src >= kWarp || !(arrived & (1u << src))) {
      const char* why = src < 0 || src >= kWarp || base + src >= launch_.threads ? "does not exist"
                        : !(u.mask & (1u << src))                              ? "is not in the mask"
                                                                               : "has exited";
      fail(fmt::format("{} at {}: thread {} (lane {}) reads lane {}, which {}; its value is undefined on a GPU. "
                       "Keep every lane the shuffle reads in the mask and alive until the shuffle (return after "
                       "it, not before)",
                       collective_name(u.kind), where(u.site), u.linear, lane, src, why));
    }
    return threads_[base + src];
  }

  // Nothing can run: complete an __activemask or the barrier, or report the block stuck.
  void resolve_stall() {
    bool progress = false;
    for (int base = 0; base < launch_.threads; base += kWarp) {
      const int end = std::min(base + kWarp, launch_.threads);
      std::map<std::pair<std::string, int>, unsigned> groups;
      for (int i = base; i < end; ++i) {
        const Thread& u = threads_[i];
        if (u.state == State::Waiting && u.wait == Wait::Warp && u.kind == Collective::ActiveMask)
          groups[{u.site.file, u.site.line}] |= 1u << (i - base);
      }
      for (const auto& [site, lanes] : groups) {
        for (int lane = 0; lane < kWarp; ++lane) {
          if (!(lanes & (1u << lane))) continue;
          threads_[base + lane].result = lanes;
          make_runnable(threads_[base + lane]);
        }
        progress = true;
      }
    }
    if (progress) return;

    bool all_at_barrier = true;
    const Thread* first = nullptr;  // the first live thread
    for (int i = 0; i < launch_.threads; ++i) {
      const Thread& u = threads_[i];
      if (u.state == State::Done) continue;
      if (u.wait != Wait::Barrier) all_at_barrier = false;
      if (!first) first = &u;
    }
    if (all_at_barrier && first) {
      for (int i = 0; i < launch_.threads; ++i) {
        const Thread& u = threads_[i];
        if (u.state != State::Done && (u.site.line != first->site.line || std::string(u.site.file) != first->site.file))
          fail(fmt::format("threads wait at different __syncthreads(): thread {} at {} and thread {} at {} (a "
                           "barrier inside a branch that the block's threads do not all take)",
                           first->linear, where(first->site), u.linear, where(u.site)));
      }
      for (int i = 0; i < launch_.threads; ++i)
        if (threads_[i].state != State::Done) make_runnable(threads_[i]);
      return;
    }
    fail(describe_stuck());
  }

  std::string describe_stuck() const {
    std::map<std::string, std::vector<int>> groups;
    for (int i = 0; i < launch_.threads; ++i) {
      const Thread& u = threads_[i];
      if (u.state != State::Waiting) continue;
      const std::string what =
          u.wait == Wait::Barrier
              ? fmt::format("__syncthreads() at {}", where(u.site))
              : fmt::format("{} (mask {:#010x}) at {}", collective_name(u.kind), u.mask, where(u.site));
      groups[what].push_back(i);
    }
    std::string text = "no thread can go on (a collective or barrier that some threads never reach):";
    for (const auto& [what, ids] : groups) {
      text += fmt::format(" {} thread(s) wait at {} (threads {}{});", ids.size(), what,
                          fmt::join(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 8), ", "),
                          ids.size() > 8 ? ", ..." : "");
    }
    int exited = 0;
    for (int i = 0; i < launch_.threads; ++i) exited += threads_[i].state == State::Done;
    return text + fmt::format(" {} thread(s) have exited", exited);
  }

  const Launch& launch_;
  std::vector<Thread>& threads_;
  std::mt19937_64* rng_;
  std::vector<int> start_order_;
  std::deque<Thread*> runnable_;
  std::vector<std::unique_ptr<Runner>> runners_;
  int next_start_ = 0;
  int done_ = 0;
  std::exception_ptr fault_;
};

void poison_shared(size_t dynamic_bytes) {
  if (__start_engine_cuda_shared != nullptr && __stop_engine_cuda_shared != nullptr)
    std::memset(__start_engine_cuda_shared, kUnwrittenByte, __stop_engine_cuda_shared - __start_engine_cuda_shared);
  if (dynamic_bytes) std::memset(dynamic_shared_memory(), kUnwrittenByte, dynamic_bytes);
}

}  // namespace

void block_barrier(Site site) {
  ENGINE_CHECK(g_block != nullptr, "__syncthreads() at {}:{} called outside a kernel launch: only a kernel run by "
               "cuda::launch may call it", site.file, site.line);
  g_block->arrive_at_barrier(site);
}

uint64_t warp_collective(Collective kind, unsigned mask, uint64_t value, int argument, int width, Site site) {
  ENGINE_CHECK(g_block != nullptr, "{} at {}:{} called outside a kernel launch: only a kernel run by cuda::launch "
               "may call it", collective_name(kind), site.file, site.line);
  return g_block->arrive_at_collective(kind, mask, value, argument, width, site);
}

void* dynamic_shared_memory() {
  // 64-byte aligned start inside the buffer (CUDA guarantees at least 16).
  const auto address = reinterpret_cast<uintptr_t>(g_dynamic_shared.data());
  return g_dynamic_shared.data() + ((64 - address % 64) % 64);
}

void set_schedule_seed(uint64_t seed) { schedule_seed_state().value = seed; }
uint64_t schedule_seed() { return schedule_seed_state().value; }
Counters counters() {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  return g_counters;
}

// The launch's configuration against an H100's limits, as the GPU checks it. The static
// __shared__ memory of a kernel is not known here: ptxas limits it when nvcc compiles the kernel,
// and the sum of static and dynamic shared memory is not checked.
int check_configuration(const void* kernel, const unsigned grid[3], const unsigned block[3], size_t dynamic_shared) {
  const uint64_t threads = uint64_t{block[0]} * block[1] * block[2];
  if (block[0] == 0 || block[1] == 0 || block[2] == 0 || block[0] > 1024 || block[1] > 1024 || block[2] > 64 ||
      threads > 1024)
    return cudaErrorInvalidConfiguration;
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 2147483647u || grid[1] > 65535 || grid[2] > 65535)
    return cudaErrorInvalidConfiguration;
  size_t limit = kSharedPerBlock;
  {
    std::lock_guard<std::mutex> lock(g_attribute_mutex);
    auto it = g_max_dynamic_shared.find(kernel);
    if (it != g_max_dynamic_shared.end()) limit = static_cast<size_t>(it->second);
  }
  if (dynamic_shared > limit) return cudaErrorInvalidValue;
  return cudaSuccess;
}

int execute(const char* name, const void* kernel, const unsigned grid[3], const unsigned block[3],
            size_t dynamic_shared, const KernelBody& body, const PointerParameters& pointers) {
  ENGINE_CHECK(schedule_seed_state().bad_text.empty(),
               "ENGINE_CUDA_EMULATION_SEED is '{}', not a number: set it to a non-negative integer (0 runs threads "
               "in index order)",
               schedule_seed_state().bad_text);
  const int status = check_configuration(kernel, grid, block, dynamic_shared);
  if (status != cudaSuccess) {
    set_last_error(status);
    return status;
  }
  run_queued_copies();  // the copies queued before the launch have reached the device
  for (int i = 0; i < pointers.count; ++i) {
    std::string problem;
    ENGINE_CHECK(kernel_may_use(pointers.value[i], &problem), "CUDA emulation: argument {} of {} is {}, {}",
                 pointers.index[i], name, pointers.value[i], problem);
  }

  std::lock_guard<std::mutex> lock(g_launch_mutex);
  const uint64_t seed = launch_seed(schedule_seed(), name, grid, block);
  const Launch launch{name, body, {block[0], block[1], block[2]}, static_cast<int>(block[0] * block[1] * block[2])};
  gridDim = dim3(grid[0], grid[1], grid[2]);
  blockDim = dim3(block[0], block[1], block[2]);
  const uint64_t blocks = uint64_t{grid[0]} * grid[1] * grid[2];
  ++g_counters.launches;
  g_counters.threads += static_cast<int64_t>(blocks) * launch.threads;

  std::unique_ptr<std::mt19937_64> rng;
  std::vector<uint32_t> block_order;
  if (seed != 0) {
    rng = std::make_unique<std::mt19937_64>(seed);
    if (blocks <= (uint64_t{1} << 20)) {
      block_order.resize(blocks);
      std::iota(block_order.begin(), block_order.end(), 0u);
      std::shuffle(block_order.begin(), block_order.end(), *rng);
    }
  }
  std::vector<Thread> threads(launch.threads);
  try {
    for (uint64_t b = 0; b < blocks; ++b) {
      const uint64_t id = block_order.empty() ? b : block_order[b];
      blockIdx = {static_cast<unsigned>(id % grid[0]), static_cast<unsigned>(id / grid[0] % grid[1]),
                  static_cast<unsigned>(id / (uint64_t{grid[0]} * grid[1]))};
      poison_shared(dynamic_shared);
      BlockRun(launch, threads, rng.get()).run();
    }
  } catch (...) {
    repair_guard_zones();  // the fault is this launch's report; later launches must not be blamed
    throw;
  }
  check_guard_zones(name);
  return cudaSuccess;
}

}  // namespace engine::cuda::emulation

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  namespace emu = engine::cuda::emulation;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > emu::kSharedPerBlockOptin) {
    emu::set_last_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  std::lock_guard<std::mutex> lock(emu::g_attribute_mutex);
  emu::g_max_dynamic_shared[kernel] = value;
  return cudaSuccess;
}
