// conv2d_cudnn.cpp - conv2d on CUDA through cuDNN 9's convolution API: descriptors (made once per
// shape), the measured algorithm ranking (cached per shape, as cudnn.benchmark) with a fallback
// to the next candidate and then to cuDNN's heuristic when a search finds nothing usable or an
// algorithm fails, workspaces from the caching allocator, and the three passes. The bias kernels
// are in conv2d_cuda.cu.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "engine/allocator.h"
#include "engine/cuda_check.h"
#include "engine/cuda_context.h"
#include "ops/conv2d.h"

namespace engine {

#if ENGINE_WITH_CUDNN

namespace {

enum class ConvPass { Forward, BackwardData, BackwardFilter };
const char* pass_name(ConvPass pass) {
  return pass == ConvPass::Forward ? "forward" : pass == ConvPass::BackwardData ? "backward data" : "backward filter";
}

cudnnDataType_t cudnn_dtype(DType dtype) {
  ENGINE_CHECK(dtype == DType::f32 || dtype == DType::bf16,
               "conv2d on CUDA takes f32 or bf16 tensors, found {}; convert with .to(DType::f32)", dtype_name(dtype));
  return dtype == DType::f32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
}

// The math cuDNN may use: bf16 always runs on tensor cores; f32 uses TF32 tensor cores only when
// switched on (cuda_context.h), otherwise plain FMA so results match the CPU to f32 rounding.
cudnnMathType_t math_type(DType dtype) {
  if (dtype == DType::bf16) return CUDNN_TENSOR_OP_MATH;
  return cuda::tf32_enabled() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

// The four descriptors of one convolution, freed with it.
struct ConvDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  ConvDescriptors(const Conv2dGeometry& g, DType dtype, bool channels_last) {
    try {
      const cudnnDataType_t dt = cudnn_dtype(dtype);
      const cudnnTensorFormat_t format = channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, format, dt, int(g.N), int(g.C), int(g.H), int(g.W)));
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, format, dt, int(g.N), int(g.K), int(g.P), int(g.Q)));
      CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, format, int(g.K), int(g.c_per_group()), int(g.R), int(g.S)));
      CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(g.opt.pad_h), int(g.opt.pad_w), int(g.opt.stride_h),
                                                  int(g.opt.stride_w), int(g.opt.dilation_h), int(g.opt.dilation_w),
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, int(g.groups())));
      CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math_type(dtype)));
    } catch (...) {
      destroy();  // a destructor does not run when the constructor throws
      throw;
    }
  }
  ~ConvDescriptors() { destroy(); }
  void destroy() {
    if (x) CUDNN_WARN(cudnnDestroyTensorDescriptor(x));
    if (y) CUDNN_WARN(cudnnDestroyTensorDescriptor(y));
    if (w) CUDNN_WARN(cudnnDestroyFilterDescriptor(w));
    if (conv) CUDNN_WARN(cudnnDestroyConvolutionDescriptor(conv));
    x = y = nullptr;
    w = nullptr;
    conv = nullptr;
  }
  ConvDescriptors(const ConvDescriptors&) = delete;
  ConvDescriptors& operator=(const ConvDescriptors&) = delete;
};

// One candidate algorithm, measured or ranked by cuDNN's heuristic, the same for the three passes.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  cudnnMathType_t math;
};
template <typename Perf>
Candidate candidate(const Perf& p) {
  return {int(p.algo), p.status, p.memory, p.mathType};
}

// One convolution's shape, type and layout: the key of its descriptors. Its algorithm choice
// also depends on the pass and the two math switches.
struct ShapeKey {
  int device;
  int64_t N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups;
  DType dtype;
  bool channels_last;
  auto tie() const {
    return std::tie(device, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, dtype, channels_last);
  }
  bool operator<(const ShapeKey& o) const { return tie() < o.tie(); }
};
struct AlgoKey {
  ShapeKey shape;
  ConvPass pass;
  bool tf32;
  auto tie() const { return std::tie(shape, pass, tf32); }
  bool operator<(const AlgoKey& o) const { return tie() < o.tie(); }
};
struct AlgoChoice {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};

// Both caches live as long as the process, as cudnn.benchmark's: a ResNet has a few dozen shapes.
std::mutex g_cache_mutex;
std::map<ShapeKey, std::unique_ptr<ConvDescriptors>> g_descriptors;
// The usable algorithms of a key, best first. One that fails when run is dropped from its list.
std::map<AlgoKey, std::vector<AlgoChoice>> g_algo_cache;

ShapeKey shape_key(int device, const Conv2dGeometry& g, DType dtype, bool channels_last) {
  return {device,         g.N,         g.C,         g.H,         g.W,              g.K,
          g.R,            g.S,         g.opt.stride_h, g.opt.stride_w, g.opt.pad_h, g.opt.pad_w,
          g.opt.dilation_h, g.opt.dilation_w, g.groups(), dtype,    channels_last};
}

// The descriptors of a shape, made once (four cuDNN objects per call otherwise).
const ConvDescriptors& descriptors(const ShapeKey& key, const Conv2dGeometry& g) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  std::unique_ptr<ConvDescriptors>& d = g_descriptors[key];
  if (!d) d = std::make_unique<ConvDescriptors>(g, key.dtype, key.channels_last);
  return *d;
}

// The largest workspace any algorithm of `pass` asks for, capped so the search cannot take the
// whole GPU (algorithms that need more are then measured as failing and skipped).
constexpr size_t kWorkspaceCap = size_t(1) << 30;
size_t search_workspace_bytes(cudnnHandle_t handle, const ConvDescriptors& d, ConvPass pass) {
  size_t largest = 0;
  const int count = pass == ConvPass::Forward        ? int(CUDNN_CONVOLUTION_FWD_ALGO_COUNT)
                    : pass == ConvPass::BackwardData ? int(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT)
                                                     : int(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  for (int a = 0; a < count; ++a) {
    size_t bytes = 0;
    cudnnStatus_t st;
    if (pass == ConvPass::Forward)
      st = cudnnGetConvolutionForwardWorkspaceSize(handle, d.x, d.w, d.conv, d.y, cudnnConvolutionFwdAlgo_t(a), &bytes);
    else if (pass == ConvPass::BackwardData)
      st = cudnnGetConvolutionBackwardDataWorkspaceSize(handle, d.w, d.y, d.conv, d.x,
                                                        cudnnConvolutionBwdDataAlgo_t(a), &bytes);
    else
      st = cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, d.x, d.y, d.conv, d.w,
                                                          cudnnConvolutionBwdFilterAlgo_t(a), &bytes);
    if (st == CUDNN_STATUS_SUCCESS && bytes <= kWorkspaceCap) largest = std::max(largest, bytes);
  }
  return largest;
}

// Times every algorithm of `pass` on the real buffers (the search overwrites the output, which
// the pass writes next anyway); cuDNN returns them fastest first. A search that fails as a whole
// (out of memory for its workspace, say) yields no candidate rather than an error.
std::vector<Candidate> measured_candidates(int device, ConvPass pass, const ConvDescriptors& d, const void* x,
                                           const void* w, const void* y, void* out) {
  cudnnHandle_t handle = cuda::cudnn_handle(device);
  std::vector<Candidate> found;
  int returned = 0;
  try {
    CudaScratch<uint8_t> ws(device, search_workspace_bytes(handle, d, pass));
    if (pass == ConvPass::Forward) {
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
      if (cudnnFindConvolutionForwardAlgorithmEx(handle, d.x, x, d.w, w, d.conv, d.y, out, int(perf.size()),
                                                 &returned, perf.data(), ws.ptr, ws.bytes()) != CUDNN_STATUS_SUCCESS)
        return {};
      for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
    } else if (pass == ConvPass::BackwardData) {
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
      if (cudnnFindConvolutionBackwardDataAlgorithmEx(handle, d.w, w, d.y, y, d.conv, d.x, out, int(perf.size()),
                                                      &returned, perf.data(), ws.ptr,
                                                      ws.bytes()) != CUDNN_STATUS_SUCCESS)
        return {};
      for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
    } else {
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
      if (cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, d.x, x, d.y, y, d.conv, d.w, out, int(perf.size()),
                                                        &returned, perf.data(), ws.ptr,
                                                        ws.bytes()) != CUDNN_STATUS_SUCCESS)
        return {};
      for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
    }
  } catch (const Error&) {
    return {};  // no memory for the search's workspace: the heuristic ranking still works
  }
  return found;
}

// cuDNN's heuristic ranking: no run, no timing; what is left when measuring found nothing usable.
std::vector<Candidate> heuristic_candidates(int device, ConvPass pass, const ConvDescriptors& d) {
  cudnnHandle_t handle = cuda::cudnn_handle(device);
  std::vector<Candidate> found;
  int returned = 0;
  if (pass == ConvPass::Forward) {
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x, d.w, d.conv, d.y, int(perf.size()), &returned,
                                                       perf.data()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  } else if (pass == ConvPass::BackwardData) {
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w, d.y, d.conv, d.x, int(perf.size()),
                                                            &returned, perf.data()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  } else {
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.x, d.y, d.conv, d.w, int(perf.size()),
                                                              &returned, perf.data()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  }
  return found;
}

// The candidates this key may use, in their order: they work, fit the workspace cap, and f32
// without TF32 stays in FMA math whatever cuDNN would prefer.
std::vector<AlgoChoice> usable(const AlgoKey& key, const std::vector<Candidate>& found) {
  std::vector<AlgoChoice> out;
  for (const Candidate& c : found) {
    if (c.status != CUDNN_STATUS_SUCCESS || c.memory > kWorkspaceCap) continue;
    if (key.shape.dtype == DType::f32 && !key.tf32 && c.math != CUDNN_FMA_MATH) continue;
    out.push_back({c.algo, c.math, c.memory});
  }
  return out;
}

[[noreturn]] void no_algorithm(const AlgoKey& key, const char* why) {
  const ShapeKey& s = key.shape;
  ENGINE_THROW("conv2d {}: {} for x ({}, {}, {}, {}), weight ({}, {}, {}, {}), groups {}, {}{}; try --precision "
               "tf32, another batch size, or the CPU",
               pass_name(key.pass), why, s.N, s.C, s.H, s.W, s.K, s.C / s.groups, s.R, s.S, s.groups,
               dtype_name(s.dtype), key.tf32 ? " with TF32" : "");
}

// Runs one pass: the cached ranking (measured once per key, else cuDNN's heuristic), each
// candidate in turn until one runs. A candidate whose workspace cannot be allocated or whose call
// fails is dropped for good and the next one runs, so a bad algorithm costs one failed call.
template <typename RunPass>
void run_with_fallback(int device, const AlgoKey& key, const ConvDescriptors& d, const void* x, const void* w,
                       const void* y, void* out, RunPass&& run_pass) {
  std::vector<AlgoChoice> ranked;
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    auto it = g_algo_cache.find(key);
    if (it != g_algo_cache.end()) ranked = it->second;
  }
  if (ranked.empty()) {
    // The descriptor is shared by the passes and keeps the math of its last run: search with the
    // math this key allows, or the search would miss (or only find) TF32 algorithms.
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, math_type(key.shape.dtype)));
    ranked = usable(key, measured_candidates(device, key.pass, d, x, w, y, out));
    if (ranked.empty()) ranked = usable(key, heuristic_candidates(device, key.pass, d));
    if (ranked.empty()) no_algorithm(key, "cuDNN offers no usable algorithm, measured or by its heuristic");
  }
  std::vector<AlgoChoice> kept;
  std::string failures;
  for (size_t i = 0; i < ranked.size(); ++i) {
    const AlgoChoice& choice = ranked[i];
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    try {
      CudaScratch<uint8_t> ws(device, choice.workspace);
      status = run_pass(choice, ws.ptr, ws.bytes());
    } catch (const Error&) {
      status = CUDNN_STATUS_ALLOC_FAILED;  // its workspace did not fit in the memory left
    }
    if (status != CUDNN_STATUS_SUCCESS) {
      // A launch error inside cuDNN stays in the runtime's last error, where our next launch check
      // would find it and blame its own kernel: take it now. An error that stays after that is
      // sticky (the context is lost): no other algorithm can run, so it is reported as it is.
      cudaGetLastError();
      const cudaError_t sticky = cudaPeekAtLastError();
      ENGINE_CHECK(sticky == cudaSuccess, "conv2d {}: cuDNN algorithm {} failed ({}) and left the GPU in error: {}",
                   pass_name(key.pass), choice.algo, cudnnGetErrorString(status), cudaGetErrorString(sticky));
    }
    if (status == CUDNN_STATUS_SUCCESS) {
      kept.assign(ranked.begin() + static_cast<std::ptrdiff_t>(i), ranked.end());
      std::lock_guard<std::mutex> lock(g_cache_mutex);
      g_algo_cache[key] = std::move(kept);
      return;
    }
    failures += fmt::format("{}algorithm {}: {}", failures.empty() ? "" : ", ", choice.algo,
                            cudnnGetErrorString(status));
  }
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    g_algo_cache.erase(key);
  }
  no_algorithm(key, fmt::format("every usable algorithm failed ({})", failures).c_str());
}

AlgoKey algo_key(const ShapeKey& shape, ConvPass pass) {
  return {shape, pass, cuda::tf32_enabled()};
}

void check_cudnn_sizes(const Conv2dGeometry& g) {
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  ENGINE_CHECK(g.N * g.C * g.H * g.W <= kMax && g.N * g.K * g.P * g.Q <= kMax &&
                   g.K * g.c_per_group() * g.R * g.S <= kMax,
               "conv2d on CUDA: x ({}, {}, {}, {}), y ({}, {}, {}, {}) or the weight has more elements than cuDNN's "
               "32-bit descriptors address; split the batch",
               g.N, g.C, g.H, g.W, g.N, g.K, g.P, g.Q);
}

}  // namespace

void conv2d_forward_cuda(int device, void* y, const void* x, const void* weight, const void* bias, DType dtype,
                         bool channels_last, const Conv2dGeometry& g) {
  if (g.N * g.K * g.P * g.Q == 0) return;  // nothing to write; cuDNN refuses empty descriptors
  check_cudnn_sizes(g);
  const ShapeKey shape = shape_key(device, g, dtype, channels_last);
  const ConvDescriptors& d = descriptors(shape, g);
  const float one = 1.f, zero = 0.f;
  run_with_fallback(device, algo_key(shape, ConvPass::Forward), d, x, weight, y, y,
                    [&](const AlgoChoice& c, void* ws, size_t ws_bytes) {
                      return cudnnConvolutionForward(cuda::cudnn_handle(device), &one, d.x, x, d.w, weight, d.conv,
                                                     cudnnConvolutionFwdAlgo_t(c.algo), ws, ws_bytes, &zero, d.y, y);
                    });
  if (bias) conv2d_bias_forward_cuda(device, y, bias, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

void conv2d_backward_data_cuda(int device, void* dx, const void* dy, const void* weight, DType dtype,
                               bool channels_last, const Conv2dGeometry& g) {
  if (g.N * g.C * g.H * g.W == 0) return;
  if (g.K == 0) {  // no output channel reaches x: its gradient is zero
    CUDA_CHECK(cudaMemsetAsync(dx, 0, g.N * g.C * g.H * g.W * dtype_size(dtype), cuda::stream(device)));
    return;
  }
  check_cudnn_sizes(g);
  const ShapeKey shape = shape_key(device, g, dtype, channels_last);
  const ConvDescriptors& d = descriptors(shape, g);
  const float one = 1.f, zero = 0.f;
  run_with_fallback(device, algo_key(shape, ConvPass::BackwardData), d, nullptr, weight, dy, dx,
                    [&](const AlgoChoice& c, void* ws, size_t ws_bytes) {
                      return cudnnConvolutionBackwardData(cuda::cudnn_handle(device), &one, d.w, weight, d.y, dy,
                                                          d.conv, cudnnConvolutionBwdDataAlgo_t(c.algo), ws, ws_bytes,
                                                          &zero, d.x, dx);
                    });
}

void conv2d_backward_filter_cuda(int device, void* dweight, void* dbias, const void* dy, const void* x, DType dtype,
                                 bool channels_last, const Conv2dGeometry& g) {
  if (g.N * g.P * g.Q == 0) {  // an empty sum: the gradients are zero
    cudaStream_t stream = cuda::stream(device);
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, g.K * g.c_per_group() * g.R * g.S * dtype_size(dtype), stream));
    if (dbias) CUDA_CHECK(cudaMemsetAsync(dbias, 0, g.K * dtype_size(dtype), stream));
    return;
  }
  if (g.K == 0) return;
  check_cudnn_sizes(g);
  const ShapeKey shape = shape_key(device, g, dtype, channels_last);
  const ConvDescriptors& d = descriptors(shape, g);
  const float one = 1.f, zero = 0.f;
  run_with_fallback(device, algo_key(shape, ConvPass::BackwardFilter), d, x, nullptr, dy, dweight,
                    [&](const AlgoChoice& c, void* ws, size_t ws_bytes) {
                      return cudnnConvolutionBackwardFilter(cuda::cudnn_handle(device), &one, d.x, x, d.y, dy,
                                                            d.conv, cudnnConvolutionBwdFilterAlgo_t(c.algo), ws,
                                                            ws_bytes, &zero, d.w, dweight);
                    });
  if (dbias) conv2d_bias_backward_cuda(device, dbias, dy, dtype, channels_last, g.N, g.K, g.P * g.Q);
}

#else  // a CUDA build without cuDNN

namespace {
[[noreturn]] void no_cudnn() {
  ENGINE_THROW("conv2d on CUDA needs cuDNN, which this build did not find; install cuDNN 9 and reconfigure "
               "(ENGINE_CUDNN_ROOT points CMake at it)");
}
}  // namespace

void conv2d_forward_cuda(int, void*, const void*, const void*, const void*, DType, bool, const Conv2dGeometry&) {
  no_cudnn();
}
void conv2d_backward_data_cuda(int, void*, const void*, const void*, DType, bool, const Conv2dGeometry&) {
  no_cudnn();
}
void conv2d_backward_filter_cuda(int, void*, void*, const void*, const void*, DType, bool, const Conv2dGeometry&) {
  no_cudnn();
}

#endif

}  // namespace engine
