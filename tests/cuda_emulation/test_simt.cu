// test_simt.cu - the CUDA emulator itself (emulation build only): what CUDA promises holds
// (barriers, warp collectives, atomics, launch limits) and the classic kernel bugs are caught: a
// missing __syncthreads() in a shared-memory reduction, an off-by-one grid-stride loop, a shuffle
// that some lanes of the warp skip, and a launch over the H100's block limit.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "engine/cuda_common.cuh"
#include "engine/allocator.h"
#include "engine/cuda_emulation/simt.h"
#include "ops/matmul.h"
#include "tests/common/test_helpers.h"

namespace engine {
namespace {

using testing::error_of;

constexpr unsigned kFull = 0xffffffffu;

// ---- device memory for a test: cudaMalloc of exactly n elements, copied in and out ----
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n;
  explicit DeviceArray(size_t count, T fill = T(0)) : n(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(T)), cudaSuccess);
    std::vector<T> host(n, fill);
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(ptr); }
  std::vector<T> read() const {
    std::vector<T> host(n);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
};

// Runs fn under the plain schedule and then under several shuffled ones, restoring the seed.
template <typename Fn>
void for_each_schedule(Fn&& fn) {
  const uint64_t saved = cuda::emulation::schedule_seed();
  for (uint64_t seed : {0, 1, 2, 3, 7, 1234}) {
    SCOPED_TRACE("schedule seed " + std::to_string(seed));
    cuda::emulation::set_schedule_seed(seed);
    fn();
  }
  cuda::emulation::set_schedule_seed(saved);
}

// ---- kernels ----

// The textbook tree reduction of one block's 256 values.
__global__ void block_sum_kernel(float* out, const float* in) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (t < s) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// Planted bug 1: the same without the barrier between the stores and the first reads.
__global__ void block_sum_missing_barrier_kernel(float* out, const float* in) {
  __shared__ float partial[256];
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * blockDim.x + t];
  for (unsigned s = blockDim.x / 2; s > 0; s /= 2) {
    if (t < s) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

__global__ void scale_kernel(float* out, const float* in, int64_t n) {
  ENGINE_GRID_STRIDE_LOOP(i, n) out[i] = 2.0f * in[i];
}

// Planted bug 2: a grid-stride loop that runs to i <= n.
__global__ void scale_off_by_one_kernel(float* out, const float* in, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i <= n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
    out[i] = 2.0f * in[i];
}

// A warp reduction over the first n lanes: correct when n is 32.
__global__ void warp_sum_of_first_lanes_kernel(float* out, const float* in, int n) {
  const int lane = threadIdx.x % 32;
  if (lane >= n) return;  // planted bug 3 when n < 32: the others still shuffle with a full mask
  float v = in[lane];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kFull, v, offset);
  if (lane == 0) *out = v;
}

// Planted bug 3b: the two halves of a warp wait at different shuffles, each naming the whole warp.
__global__ void split_shuffle_kernel(float* out, const float* in) {
  const int lane = threadIdx.x % 32;
  float v = in[lane];
  if (lane < 16)
    v = __shfl_down_sync(kFull, v, 1);
  else
    v = __shfl_up_sync(kFull, v, 1);
  out[lane] = v;
}

// A barrier that only half of the block reaches.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 64) {
    __syncthreads();
    out[threadIdx.x] = 1.0f;
  } else {
    __syncthreads();
    out[threadIdx.x] = 2.0f;
  }
}

__global__ void noop_kernel(float* out) {
  if (out && threadIdx.x == 0) out[blockIdx.x] = 1.0f;
}

__global__ void dynamic_shared_kernel(float* out, int n) {
  ENGINE_DYNAMIC_SHARED(float, buffer);
  for (int i = threadIdx.x; i < n; i += blockDim.x) buffer[i] = 1.0f;
  __syncthreads();
  float s = 0;
  for (int i = 0; i < n; ++i) s += buffer[i];
  if (threadIdx.x == 0) *out = s;
}

// Every lane's result of each shuffle, the ballot and __activemask, side by side.
__global__ void warp_collectives_kernel(int* idx, int* up, int* down, int* xr, unsigned* ballot, unsigned* active) {
  const int lane = threadIdx.x;
  idx[lane] = __shfl_sync(kFull, lane * 10, 5);
  up[lane] = __shfl_up_sync(kFull, lane * 10, 3);
  down[lane] = __shfl_down_sync(kFull, lane * 10, 3, 8);  // in groups of 8 lanes
  xr[lane] = __shfl_xor_sync(kFull, lane * 10, 1);
  ballot[lane] = __ballot_sync(kFull, lane % 3 == 0);
  __syncwarp();
  if (lane % 2 == 0) active[lane] = __activemask();
  else active[lane] = 0;
}

// counters: [count, max, min, last exchanged, CAS winners]; the CAS only succeeds for the first
// thread to find the slot at -1.
// Four shuffles in a 16 x 4 block (two warps), each lane's value its linear thread index t:
// out[t] idx lane 2 of its group of 8; out[64 + t] xor 4 in groups of 16; out[128 + t] lane 0 of its
// half warp, each half with its own mask; out[192 + t] lane 0 of the warp.
__global__ void group_shuffles_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.y * blockDim.x + threadIdx.x), lane = t % 32;
  out[t] = __shfl_sync(kFull, t, 2, 8) - t / 32 * 32;
  out[64 + t] = __shfl_xor_sync(kFull, t, 4, 16) - t / 32 * 32;
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  out[128 + t] = __shfl_sync(half, t, lane < 16 ? 0 : 16);
  out[192 + t] = __shfl_sync(kFull, t, 0);
}

// Lanes of the low half shuffle among themselves but read a lane of the high half.
__global__ void shuffle_outside_mask_kernel(int* out) {
  const int lane = static_cast<int>(threadIdx.x);
  out[lane] = __shfl_down_sync(lane < 16 ? 0x0000ffffu : 0xffff0000u, lane, 8);
}

__global__ void mask_without_caller_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, static_cast<int>(threadIdx.x), 0);
}

__global__ void shuffle_by_32_kernel(int* out) {
  out[threadIdx.x] = __shfl_down_sync(kFull, static_cast<int>(threadIdx.x), 32);
}

__global__ void atomics_kernel(int* counters, float* total) {
  const int id = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&counters[0], 1);
  atomicMax(&counters[1], id);
  atomicMin(&counters[2], id);
  atomicExch(&counters[3], id);
  if (atomicCAS(&counters[5], -1, id) == -1) atomicAdd(&counters[4], 1);
  atomicAdd(total, 0.5f);
}

// Reads its shared memory before writing it: each block must see NaN, never an earlier block's value.
__global__ void read_shared_first_kernel(float* out) {
  __shared__ float value;
  if (threadIdx.x == 0) {
    out[blockIdx.x] = value;
    value = 42.0f;
  }
}

// ---- the emulator does what CUDA promises ----

TEST(CudaEmulation, BlockReductionIsRightInEverySchedule) {
  std::vector<float> in(4 * 256);
  std::iota(in.begin(), in.end(), 0.0f);
  const DeviceArray<float> x(in);
  for_each_schedule([&] {
    DeviceArray<float> sums(4);
    cuda::launch("block_sum_kernel", block_sum_kernel, 4, 256, 0, cuda::stream(0), sums.ptr, x.ptr);
    const auto got = sums.read();
    for (int b = 0; b < 4; ++b) EXPECT_EQ(got[b], 256.0f * 256 * b + 255.0f * 256 / 2) << "block " << b;
  });
}

TEST(CudaEmulation, WarpCollectivesFollowCudasLaneRules) {
  for_each_schedule([&] {
    DeviceArray<int> idx(32), up(32), down(32), xr(32);
    DeviceArray<unsigned> ballot(32), active(32);
    cuda::launch("warp_collectives_kernel", warp_collectives_kernel, 1, 32, 0, cuda::stream(0), idx.ptr, up.ptr,
                 down.ptr, xr.ptr, ballot.ptr, active.ptr);
    const auto i = idx.read(), u = up.read(), d = down.read(), x = xr.read();
    const auto b = ballot.read(), a = active.read();
    unsigned every_third = 0;
    for (int lane = 0; lane < 32; lane += 3) every_third |= 1u << lane;
    for (int lane = 0; lane < 32; ++lane) {
      EXPECT_EQ(i[lane], 50) << lane;
      EXPECT_EQ(u[lane], lane >= 3 ? (lane - 3) * 10 : lane * 10) << lane;          // below the warp: own value
      EXPECT_EQ(d[lane], lane % 8 + 3 < 8 ? (lane + 3) * 10 : lane * 10) << lane;  // past the group: own value
      EXPECT_EQ(x[lane], (lane ^ 1) * 10) << lane;
      EXPECT_EQ(b[lane], every_third) << lane;
      EXPECT_EQ(a[lane], lane % 2 == 0 ? 0x55555555u : 0u) << lane;  // the even lanes took the branch
    }
  });
}

TEST(CudaEmulation, ShufflesWithinGroupsAndHalfWarpMasksIn2DBlocks) {
  for_each_schedule([&] {
    DeviceArray<int> out(4 * 64);
    cuda::launch("group_shuffles_kernel", group_shuffles_kernel, 1, dim3(16, 4), 0, cuda::stream(0), out.ptr);
    const auto o = out.read();
    for (int t = 0; t < 64; ++t) {  // t = threadIdx.y * 16 + threadIdx.x; warp t / 32, lane t % 32
      const int lane = t % 32, warp_base = t - lane;
      EXPECT_EQ(o[t], lane / 8 * 8 + 2) << "idx in groups of 8, thread " << t;
      EXPECT_EQ(o[64 + t], lane ^ 4) << "xor in groups of 16, thread " << t;
      EXPECT_EQ(o[128 + t], warp_base + (lane < 16 ? 0 : 16)) << "each half warp reads its own lane 0, thread " << t;
      EXPECT_EQ(o[192 + t], warp_base) << "lane 0 of the thread's warp, thread " << t;
    }
  });
}

TEST(CudaEmulation, BadShuffleMasksAndOffsetsAreFaults) {
  DeviceArray<int> out(32);
  const std::string not_in_mask = error_of([&] {
    cuda::launch("shuffle_outside_mask_kernel", shuffle_outside_mask_kernel, 1, 32, 0, cuda::stream(0), out.ptr);
  });
  EXPECT_NE(not_in_mask.find("reads lane 16, which is not in the mask"), std::string::npos) << not_in_mask;
  const std::string own_lane = error_of([&] {
    cuda::launch("mask_without_caller_kernel", mask_without_caller_kernel, 1, 32, 0, cuda::stream(0), out.ptr);
  });
  EXPECT_NE(own_lane.find("which leaves out its own lane"), std::string::npos) << own_lane;
  const std::string offset = error_of(
      [&] { cuda::launch("shuffle_by_32_kernel", shuffle_by_32_kernel, 1, 32, 0, cuda::stream(0), out.ptr); });
  EXPECT_NE(offset.find("shifts by 32"), std::string::npos) << offset;
}

TEST(CudaEmulation, AtomicsSeeEveryThread) {
  for_each_schedule([&] {
    DeviceArray<int> counters(std::vector<int>{0, -1, 1 << 30, -1, 0, -1});
    DeviceArray<float> total(1);
    cuda::launch("atomics_kernel", atomics_kernel, 7, 96, 0, cuda::stream(0), counters.ptr, total.ptr);
    const auto c = counters.read();
    EXPECT_EQ(c[0], 7 * 96);
    EXPECT_EQ(c[1], 7 * 96 - 1);
    EXPECT_EQ(c[2], 0);
    EXPECT_GE(c[3], 0);
    EXPECT_LT(c[3], 7 * 96);
    EXPECT_EQ(c[4], 1) << "exactly one thread wins the compare-and-swap";
    EXPECT_EQ(total.read()[0], 7 * 96 * 0.5f);
  });
}

TEST(CudaEmulation, ThreadsThatNeverSynchroniseCostNoContextSwitch) {
  const DeviceArray<float> x(std::vector<float>(4 * 256, 1.0f));
  DeviceArray<float> y(4 * 256);
  const auto before = cuda::emulation::counters();
  cuda::launch("scale_kernel", scale_kernel, 4, 256, 0, cuda::stream(0), y.ptr, x.ptr, int64_t{4 * 256});
  const auto after = cuda::emulation::counters();
  EXPECT_EQ(after.launches - before.launches, 1);
  EXPECT_EQ(after.threads - before.threads, 4 * 256);
  EXPECT_EQ(after.context_switches - before.context_switches, 4) << "one runner a block runs all its threads";
  DeviceArray<float> sums(4);
  cuda::launch("block_sum_kernel", block_sum_kernel, 4, 256, 0, cuda::stream(0), sums.ptr, x.ptr);
  EXPECT_GE(cuda::emulation::counters().context_switches - after.context_switches, 4 * 256 * 9)
      << "every thread yields at each of the reduction's 9 barriers";
}

TEST(CudaEmulation, SharedMemoryIsPoisonedBeforeEveryBlock) {
  DeviceArray<float> out(3);
  cuda::launch("read_shared_first_kernel", read_shared_first_kernel, 3, 32, 0, cuda::stream(0), out.ptr);
  for (float v : out.read()) EXPECT_TRUE(std::isnan(v)) << "a block saw " << v;
}

TEST(CudaEmulation, DynamicSharedMemoryUpToTheOptInLimit) {
  DeviceArray<float> out(1);
  const int n = 20000;  // 80 000 bytes: more than the default 48 KiB
  const std::string refused = error_of([&] {
    cuda::launch("dynamic_shared_kernel", dynamic_shared_kernel, 1, 128, n * sizeof(float), cuda::stream(0), out.ptr,
                 n);
  });
  EXPECT_NE(refused.find("cudaErrorInvalidValue"), std::string::npos) << refused;
  ASSERT_EQ(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n * 4),
            cudaSuccess);
  cuda::launch("dynamic_shared_kernel", dynamic_shared_kernel, 1, 128, n * sizeof(float), cuda::stream(0), out.ptr, n);
  EXPECT_EQ(out.read()[0], static_cast<float>(n));
  EXPECT_EQ(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
            cudaErrorInvalidValue)
      << "over the H100's 227 KiB";
  cudaGetLastError();
}

TEST(CudaEmulation, DevicePropertiesAreAnH100s) {
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_EQ(p.multiProcessorCount, 132);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.major, 9);
}

TEST(CudaEmulation, CopiesOutsideAnAllocationAreRefused) {
  DeviceArray<float> x(16);
  std::vector<float> host(32);
  const std::string m = error_of([&] { CUDA_CHECK(cudaMemcpy(host.data(), x.ptr, 32 * 4, cudaMemcpyDeviceToHost)); });
  EXPECT_NE(m.find("bytes [0, 128) of the device block at"), std::string::npos) << m;
  EXPECT_NE(m.find("run past its 64 bytes"), std::string::npos) << m;
  const std::string wrong_side =
      error_of([&] { CUDA_CHECK(cudaMemcpy(host.data(), x.ptr, 16 * 4, cudaMemcpyHostToDevice)); });
  EXPECT_NE(wrong_side.find("expects device memory as its destination, found host memory"), std::string::npos)
      << wrong_side;
}

// A copy between the device and pinned memory waits for the next operation on the device, as on a
// GPU; from or to pageable memory it is done when the call returns.
TEST(CudaEmulation, CopiesWithPinnedMemoryCompleteOnlyAtASynchronisation) {
  DeviceArray<float> x(4);
  float* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&pinned), 4 * sizeof(float), cudaHostAllocDefault), cudaSuccess);
  for (int i = 0; i < 4; ++i) pinned[i] = 1.0f + i;
  ASSERT_EQ(cudaMemcpyAsync(x.ptr, pinned, 16, cudaMemcpyHostToDevice, cuda::stream(0)), cudaSuccess);
  pinned[0] = 99.0f;  // rewritten before the copy ran: the GPU may read either value, the emulation the new one
  cudaEvent_t after_upload = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&after_upload, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(after_upload, cuda::stream(0)), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, x.ptr, 16, cudaMemcpyDeviceToHost, cuda::stream(0)), cudaSuccess);
  EXPECT_TRUE(std::isnan(pinned[1])) << "read before a synchronisation: the copy has not arrived";
  ASSERT_EQ(cudaEventSynchronize(after_upload), cudaSuccess);
  EXPECT_TRUE(std::isnan(pinned[1])) << "the download was queued after the event: waiting for it does not run it";
  ASSERT_EQ(cudaStreamSynchronize(cuda::stream(0)), cudaSuccess);
  EXPECT_EQ(pinned[0], 99.0f);
  EXPECT_EQ(pinned[3], 4.0f);
  std::vector<float> pageable(4, 7.0f);
  ASSERT_EQ(cudaMemcpyAsync(x.ptr, pageable.data(), 16, cudaMemcpyHostToDevice, cuda::stream(0)), cudaSuccess);
  pageable[0] = -1.0f;  // the copy from pageable memory is already done
  EXPECT_EQ(x.read()[0], 7.0f);
  ASSERT_EQ(cudaEventDestroy(after_upload), cudaSuccess);
  ASSERT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

TEST(CudaEmulation, ATensorsBlockIsGuardedAtItsRequestAndRefusedOnceFreed) {
  // 4000 bytes from the caching allocator: a 4096-byte block whose last 96 bytes are guarded too.
  auto* y = static_cast<float*>(cuda_allocate(0, 4000));
  const DeviceArray<float> x(std::vector<float>(1001, 1.0f));
  const std::string overflow = error_of([&] {
    cuda::launch("scale_off_by_one_kernel", scale_off_by_one_kernel, 4, 256, 0, cuda::stream(0), y, x.ptr,
                 int64_t{1000});
  });
  EXPECT_NE(overflow.find("holds 4000 bytes"), std::string::npos) << overflow;
  EXPECT_NE(overflow.find("(element 1000 of 4-byte elements)"), std::string::npos) << overflow;
  cuda::launch("scale_kernel", scale_kernel, 4, 256, 0, cuda::stream(0), y, x.ptr, int64_t{1000});  // repaired
  cuda_free(0, y);
  const std::string after_free = error_of([&] {
    cuda::launch("scale_kernel", scale_kernel, 4, 256, 0, cuda::stream(0), y, x.ptr, int64_t{1000});
  });
  EXPECT_NE(after_free.find("argument 0 of scale_kernel"), std::string::npos) << after_free;
  EXPECT_NE(after_free.find("freed (use after free)"), std::string::npos) << after_free;
}

TEST(CudaEmulation, LibraryStandInsCheckTheirOperands) {
  DeviceArray<float> a(6), b(6), c(3);  // C of 2 x 2 needs 4 floats
  const std::string small =
      error_of([&] { matmul_forward_cuda<float>(0, c.ptr, a.ptr, b.ptr, 2, 2, 3, false, false, 3, 2, 2); });
  EXPECT_NE(small.find("cublasGemm (CPU stand-in) needs 16 bytes of device memory for its operand C"),
            std::string::npos)
      << small;
  std::vector<float> host(6);
  const std::string on_host =
      error_of([&] { matmul_forward_cuda<float>(0, c.ptr, host.data(), b.ptr, 1, 1, 3, false, false, 3, 1, 1); });
  EXPECT_NE(on_host.find("operand A"), std::string::npos) << on_host;
  EXPECT_NE(on_host.find("found host memory"), std::string::npos) << on_host;
}

TEST(CudaEmulation, AHostPointerHandedToAKernelIsAFault) {
  std::vector<float> host(4);
  const std::string m = error_of(
      [&] { cuda::launch("noop_kernel", noop_kernel, 1, 32, 0, cuda::stream(0), host.data()); });
  EXPECT_NE(m.find("argument 0 of noop_kernel"), std::string::npos) << m;
  EXPECT_NE(m.find("neither device memory nor pinned host memory"), std::string::npos) << m;
}

TEST(CudaEmulation, ThreadsAtDifferentBarriersAreAFault) {
  DeviceArray<float> out(128);
  const std::string m = error_of(
      [&] { cuda::launch("divergent_barrier_kernel", divergent_barrier_kernel, 1, 128, 0, cuda::stream(0), out.ptr); });
  EXPECT_NE(m.find("threads wait at different __syncthreads()"), std::string::npos) << m;
}

// ---- the four planted bugs are caught ----

TEST(CudaEmulation, CatchesAMissingSyncthreadsInASharedMemoryReduction) {
  std::vector<float> in(256, 1.0f);
  const DeviceArray<float> x(in);
  for_each_schedule([&] {
    DeviceArray<float> sum(1);
    cuda::launch("block_sum_missing_barrier_kernel", block_sum_missing_barrier_kernel, 1, 256, 0, cuda::stream(0),
                 sum.ptr, x.ptr);
    const float got = sum.read()[0];
    EXPECT_TRUE(std::isnan(got)) << "the reduction read shared values no thread had written yet, which the "
                                    "emulator's NaN poison must expose; got "
                                 << got << " (256 is right)";
  });
}

TEST(CudaEmulation, CatchesAnOffByOneGridStrideLoop) {
  const int64_t n = 1000;
  const DeviceArray<float> x(std::vector<float>(n, 1.0f));
  DeviceArray<float> y(n);
  cuda::launch("scale_kernel", scale_kernel, 4, 256, 0, cuda::stream(0), y.ptr, x.ptr, n);  // the correct loop
  EXPECT_EQ(y.read()[n - 1], 2.0f);
  const std::string m = error_of([&] {
    cuda::launch("scale_off_by_one_kernel", scale_off_by_one_kernel, 4, 256, 0, cuda::stream(0), y.ptr, x.ptr, n);
  });
  EXPECT_NE(m.find("scale_off_by_one_kernel wrote past the end of a device buffer"), std::string::npos) << m;
  EXPECT_NE(m.find("holds 4000 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("(element 1000 of 4-byte elements)"), std::string::npos) << m;
  cuda::launch("scale_kernel", scale_kernel, 4, 256, 0, cuda::stream(0), y.ptr, x.ptr, n);
  EXPECT_EQ(y.read()[n - 1], 2.0f) << "the guard zone was restored: the next launch is not blamed";
}

TEST(CudaEmulation, CatchesAShuffleThatSomeLanesOfTheWarpSkip) {
  const DeviceArray<float> x(std::vector<float>(32, 1.0f));
  DeviceArray<float> sum(1);
  cuda::launch("warp_sum_of_first_lanes_kernel", warp_sum_of_first_lanes_kernel, 1, 32, 0, cuda::stream(0), sum.ptr,
               x.ptr, 32);
  EXPECT_EQ(sum.read()[0], 32.0f);
  for_each_schedule([&] {
    const std::string m = error_of([&] {
      cuda::launch("warp_sum_of_first_lanes_kernel", warp_sum_of_first_lanes_kernel, 1, 32, 0, cuda::stream(0),
                   sum.ptr, x.ptr, 20);
    });
    EXPECT_NE(m.find("__shfl_down_sync at"), std::string::npos) << m;
    EXPECT_NE(m.find("reads lane 20, which has exited"), std::string::npos) << m;
  });
  DeviceArray<float> out(32);
  const std::string stuck = error_of(
      [&] { cuda::launch("split_shuffle_kernel", split_shuffle_kernel, 1, 32, 0, cuda::stream(0), out.ptr, x.ptr); });
  EXPECT_NE(stuck.find("no thread can go on"), std::string::npos) << stuck;
  EXPECT_NE(stuck.find("16 thread(s) wait at __shfl_down_sync"), std::string::npos) << stuck;
  EXPECT_NE(stuck.find("16 thread(s) wait at __shfl_up_sync"), std::string::npos) << stuck;
}

TEST(CudaEmulation, CatchesALaunchOverTheBlockLimit) {
  DeviceArray<float> out(2);
  cuda::launch("noop_kernel", noop_kernel, 2, 1024, 0, cuda::stream(0), out.ptr);  // the limit itself is fine
  for (const dim3 block : {dim3(1025), dim3(32, 33), dim3(1, 1, 65), dim3(0)}) {
    const std::string m =
        error_of([&] { cuda::launch("noop_kernel", noop_kernel, 1, block, 0, cuda::stream(0), out.ptr); });
    EXPECT_NE(m.find("kernel launch failed: cudaErrorInvalidConfiguration (invalid configuration argument)"),
              std::string::npos)
        << block.x << "x" << block.y << "x" << block.z << ": " << m;
  }
  const std::string grid_y =
      error_of([&] { cuda::launch("noop_kernel", noop_kernel, dim3(1, 65536), 32, 0, cuda::stream(0), out.ptr); });
  EXPECT_NE(grid_y.find("cudaErrorInvalidConfiguration"), std::string::npos) << grid_y;
  EXPECT_NE(grid_y.find("test_simt.cu:" + std::to_string(__LINE__ - 2)), std::string::npos)
      << "the error names the line of the launch: " << grid_y;
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the launch helper has read and cleared the error";
}

}  // namespace
}  // namespace engine
