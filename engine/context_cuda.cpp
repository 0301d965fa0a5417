// context_cuda.cpp - per-GPU engine stream and library handles, created on first use.
//
// Contexts live until the process ends on purpose: destroying streams and handles from static
// destructors races the CUDA driver's own shutdown.
#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "engine/device.h"

namespace engine {

bool cuda_is_built() { return true; }

std::string cuda_device_identity(int device) {
  require_cuda_device(Device::cuda(device), "cuda_device_identity");
#if ENGINE_CUDA_EMULATION
  return fmt::format("emulated GPU {} of process {}", device, static_cast<long>(getpid()));
#else
  char bus[64] = {0};
  CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), device));
  return bus;
#endif
}

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: clear the sticky error, report zero GPUs
      return 0;
    }
    return n;
  }();
  return count;
}

#if !ENGINE_CUDA_EMULATION
namespace detail {
const char* cublas_status_string(cublasStatus_t status) { return cublasGetStatusString(status); }
}  // namespace detail
#endif

}  // namespace engine

namespace engine::cuda {

namespace {

struct DeviceContext {
  std::mutex mutex;  // guards the lazily set fields below
  cudaStream_t stream = nullptr;
  cudaStream_t copy_stream = nullptr;  // created on first use
#if !ENGINE_CUDA_EMULATION
  cublasHandle_t cublas = nullptr;
  bool cublas_tf32 = false;
#endif
#if ENGINE_WITH_CUDNN
  cudnnHandle_t cudnn = nullptr;  // created on first use: nothing loads cuDNN until a conv needs it
#endif
};

std::atomic<bool> g_tf32{false};

DeviceContext& context(int device) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<DeviceContext>> contexts;
  require_cuda_device(Device::cuda(device), "the CUDA context");
  std::lock_guard<std::mutex> lock(mutex);
  if (contexts.empty()) contexts.resize(cuda_device_count());
  auto& slot = contexts[device];
  if (!slot) {
    auto ctx = std::make_unique<DeviceContext>();
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
#if !ENGINE_CUDA_EMULATION
    CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    CUBLAS_CHECK(cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH));
#endif
    slot = std::move(ctx);
  }
  return *slot;
}

}  // namespace

cudaStream_t stream(int device) {
  DeviceContext& ctx = context(device);
  CUDA_CHECK(cudaSetDevice(device));
  return ctx.stream;
}

cudaStream_t copy_stream(int device) {
  DeviceContext& ctx = context(device);
  CUDA_CHECK(cudaSetDevice(device));
  std::lock_guard<std::mutex> lock(ctx.mutex);
  if (ctx.copy_stream == nullptr) CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.copy_stream, cudaStreamNonBlocking));
  return ctx.copy_stream;
}

#if !ENGINE_CUDA_EMULATION
cublasHandle_t cublas_handle(int device) {
  DeviceContext& ctx = context(device);
  CUDA_CHECK(cudaSetDevice(device));
  const bool want_tf32 = g_tf32.load();
  std::lock_guard<std::mutex> lock(ctx.mutex);
  if (ctx.cublas_tf32 != want_tf32) {
    CUBLAS_CHECK(cublasSetMathMode(ctx.cublas, want_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    ctx.cublas_tf32 = want_tf32;
  }
  return ctx.cublas;
}
#endif

#if ENGINE_WITH_CUDNN
cudnnHandle_t cudnn_handle(int device) {
  DeviceContext& ctx = context(device);
  CUDA_CHECK(cudaSetDevice(device));
  std::lock_guard<std::mutex> lock(ctx.mutex);
  if (ctx.cudnn == nullptr) {
    CUDNN_CHECK(cudnnCreate(&ctx.cudnn));
    CUDNN_CHECK(cudnnSetStream(ctx.cudnn, ctx.stream));
  }
  return ctx.cudnn;
}
#endif

void synchronize(int device) { CUDA_CHECK(cudaStreamSynchronize(stream(device))); }

void set_tf32_enabled(bool enabled) { g_tf32 = enabled; }
bool tf32_enabled() { return g_tf32; }

std::string library_versions() {
#if ENGINE_CUDA_EMULATION
  return fmt::format("CUDA emulation on the CPU: our kernels run on a SIMT emulator with an H100's limits "
                     "(schedule seed {}); cuBLAS, cuDNN and CUB calls run the CPU reference instead; {} GPU(s) "
                     "visible",
                     emulation::schedule_seed(), cuda_device_count());
#else
  int runtime = 0, driver = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &cublas_major));
  CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &cublas_minor));
  CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  std::string text = fmt::format("CUDA runtime {}.{}, driver {}, cuBLAS {}.{}.{}", runtime / 1000,
                                 (runtime % 1000) / 10,
                                 driver ? fmt::format("{}.{}", driver / 1000, (driver % 1000) / 10)
                                        : std::string("none"),
                                 cublas_major, cublas_minor, cublas_patch);
#if ENGINE_WITH_CUDNN
  const size_t cudnn = cudnnGetVersion();  // major*10000 + minor*100 + patch in cuDNN 9
  text += fmt::format(", cuDNN {}.{}.{}", cudnn / 10000, (cudnn % 10000) / 100, cudnn % 100);
#endif
  text += fmt::format(", {} GPU(s) visible", cuda_device_count());
  return text;
#endif
}

int elementwise_grid(int64_t n, int block) {
  // Enough blocks to fill the GPU several times over; grid-stride loops cover the rest.
  const int64_t blocks = (n + block - 1) / block;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65536));
}

}  // namespace engine::cuda
