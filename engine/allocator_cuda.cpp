// allocator_cuda.cpp - the caching allocator's CUDA backing (cudaMalloc/cudaFree) and pinned memory.
#include <fmt/format.h>

#include <memory>
#include <mutex>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "engine/device.h"
#if ENGINE_CUDA_EMULATION
#include "engine/cuda_emulation/device_memory.h"
#endif

namespace engine {

namespace {

class CudaBacking final : public BackingAllocator {
 public:
  explicit CudaBacking(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    CUDA_CHECK(cudaSetDevice(device_));
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, nbytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it: out of memory is answered by the caller, not sticky
      return nullptr;
    }
    CUDA_CHECK(status);
    return ptr;
  }
  void deallocate(void* ptr) override {
    CUDA_WARN(cudaSetDevice(device_));
    CUDA_WARN(cudaFree(ptr));
  }
  void synchronize() override { cuda::synchronize(device_); }
  const char* allocate_call() const override { return "cudaMalloc"; }
  const char* free_call() const override { return "cudaFree"; }
#if ENGINE_CUDA_EMULATION
  void handed_out(void* ptr, size_t nbytes) override { cuda::emulation::note_handed_out(ptr, nbytes); }
  void taken_back(void* ptr) override { cuda::emulation::note_taken_back(ptr); }
#endif
  std::string describe() const override {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
      cudaGetLastError();
      return fmt::format("cuda:{} could not report its free memory", device_);
    }
    return fmt::format("cuda:{} has {} free of {} in all", device_, format_bytes(free_bytes),
                       format_bytes(total_bytes));
  }

 private:
  int device_;
};

}  // namespace

CachingAllocator& cuda_allocator(int device) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<CachingAllocator>>* allocators =
      new std::vector<std::unique_ptr<CachingAllocator>>();  // never destroyed: tensors may outlive statics
  require_cuda_device(Device::cuda(device), "the CUDA allocator");
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators->empty()) allocators->resize(cuda_device_count());
  auto& slot = (*allocators)[device];
  if (!slot) slot = std::make_unique<CachingAllocator>(fmt::format("cuda:{}", device),
                                                       std::make_unique<CudaBacking>(device));
  return *slot;
}

void* cuda_allocate(int device, size_t nbytes) {
  return cuda_allocator(device).allocate(nbytes, cuda::stream(device));
}

void cuda_free(int device, void* ptr) { cuda_allocator(device).deallocate(ptr); }

HostBuffer pinned_allocate(size_t nbytes) {
  if (nbytes == 0) return {};
  if (cuda_device_count() == 0) return {host_allocate(nbytes), nbytes, false};
  void* ptr = nullptr;
  const cudaError_t status = cudaHostAlloc(&ptr, nbytes, cudaHostAllocDefault);
  if (status != cudaSuccess) {
    cudaGetLastError();
    ENGINE_WARN("cudaHostAlloc({}) failed ({}); using ordinary host memory, so copies to the GPU "
                "will not overlap compute",
                format_bytes(nbytes), cudaGetErrorString(status));
    return {host_allocate(nbytes), nbytes, false};
  }
  return {ptr, nbytes, true};
}

void pinned_free(const HostBuffer& buffer) {
  if (buffer.data == nullptr) return;
  if (buffer.pinned) {
    CUDA_WARN(cudaFreeHost(buffer.data));
  } else {
    host_free(buffer.data);
  }
}

}  // namespace engine
