// conv2d_cudnn.cpp - conv2d on CUDA through cuDNN 9's convolution API: descriptors, the
// measured algorithm choice (cached per shape, as cudnn.benchmark), workspaces from the caching
// allocator, and the three passes. The bias kernels are in conv2d_cuda.cu.
#include <algorithm>
#include <map>
#include <mutex>
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

// One measured candidate, the same for the three passes.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  float time_ms;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};
template <typename Perf>
Candidate candidate(const Perf& p) {
  return {int(p.algo), p.status, p.time, p.memory, p.determinism, p.mathType};
}

struct AlgoKey {
  int device;
  ConvPass pass;
  int64_t N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups;
  DType dtype;
  bool channels_last, deterministic, tf32;
  auto tie() const {
    return std::tie(device, pass, N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups, dtype, channels_last,
                    deterministic, tf32);
  }
  bool operator<(const AlgoKey& o) const { return tie() < o.tie(); }
};
struct AlgoChoice {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};

std::mutex g_cache_mutex;
std::map<AlgoKey, AlgoChoice> g_algo_cache;

// The largest workspace any algorithm of `pass` asks for, capped so the search cannot take the
// whole GPU (algorithms that need more are then measured as failing and skipped).
size_t search_workspace_bytes(cudnnHandle_t handle, const ConvDescriptors& d, ConvPass pass) {
  constexpr size_t kCap = size_t(1) << 30;
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
    if (st == CUDNN_STATUS_SUCCESS && bytes <= kCap) largest = std::max(largest, bytes);
  }
  return largest;
}

// Times every algorithm of `pass` on the real buffers (the search overwrites the output, which
// the pass writes next anyway) and keeps the fastest usable one.
AlgoChoice choose_algorithm(int device, const AlgoKey& key, const ConvDescriptors& d, const void* x, const void* w,
                            const void* y, const void* dst_for_search) {
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    auto it = g_algo_cache.find(key);
    if (it != g_algo_cache.end()) return it->second;
  }
  cudnnHandle_t handle = cuda::cudnn_handle(device);
  CudaScratch<uint8_t> ws(device, search_workspace_bytes(handle, d, key.pass));
  std::vector<Candidate> found;
  int returned = 0;
  void* out = const_cast<void*>(dst_for_search);
  if (key.pass == ConvPass::Forward) {
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, d.x, x, d.w, w, d.conv, d.y, out, int(perf.size()),
                                                       &returned, perf.data(), ws.ptr, ws.bytes()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  } else if (key.pass == ConvPass::BackwardData) {
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, d.w, w, d.y, y, d.conv, d.x, out,
                                                            int(perf.size()), &returned, perf.data(), ws.ptr,
                                                            ws.bytes()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  } else {
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, d.x, x, d.y, y, d.conv, d.w, out,
                                                              int(perf.size()), &returned, perf.data(), ws.ptr,
                                                              ws.bytes()));
    for (int i = 0; i < returned; ++i) found.push_back(candidate(perf[i]));
  }
  // cuDNN returns the candidates fastest first.
  for (const Candidate& c : found) {
    if (c.status != CUDNN_STATUS_SUCCESS || c.memory > ws.bytes()) continue;
    if (key.deterministic && c.determinism != CUDNN_DETERMINISTIC) continue;
    // f32 without TF32 must stay in f32 FMA math, whatever cuDNN would otherwise prefer.
    if (key.dtype == DType::f32 && !key.tf32 && c.math != CUDNN_FMA_MATH) continue;
    const AlgoChoice choice{c.algo, c.math, c.memory};
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    g_algo_cache.emplace(key, choice);
    return choice;
  }
  ENGINE_THROW("conv2d {}: cuDNN found no usable{} algorithm among {} candidates for x ({}, {}, {}, {}), "
               "weight ({}, {}, {}, {}), groups {}{}",
               pass_name(key.pass), key.deterministic ? " deterministic" : "", found.size(), key.N, key.C, key.H,
               key.W, key.K, key.C / key.groups, key.R, key.S, key.groups,
               key.deterministic ? "; turn deterministic mode off (set_conv2d_deterministic(false))" : "");
}

AlgoKey make_key(int device, ConvPass pass, const Conv2dGeometry& g, DType dtype, bool channels_last) {
  return {device,  pass,    g.N,   g.C,       g.H,       g.W,       g.K,       g.R,          g.S,
          g.opt.stride_h, g.opt.stride_w, g.opt.pad_h, g.opt.pad_w, g.opt.dilation_h, g.opt.dilation_w,
          g.groups(), dtype, channels_last, conv2d_deterministic(), cuda::tf32_enabled()};
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
  const ConvDescriptors d(g, dtype, channels_last);
  const AlgoChoice choice =
      choose_algorithm(device, make_key(device, ConvPass::Forward, g, dtype, channels_last), d, x, weight, y, y);
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  CudaScratch<uint8_t> ws(device, choice.workspace);
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(cuda::cudnn_handle(device), &one, d.x, x, d.w, weight, d.conv,
                                      cudnnConvolutionFwdAlgo_t(choice.algo), ws.ptr, ws.bytes(), &zero, d.y, y));
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
  const ConvDescriptors d(g, dtype, channels_last);
  const AlgoChoice choice = choose_algorithm(device, make_key(device, ConvPass::BackwardData, g, dtype, channels_last),
                                             d, nullptr, weight, dy, dx);
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  CudaScratch<uint8_t> ws(device, choice.workspace);
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(cuda::cudnn_handle(device), &one, d.w, weight, d.y, dy, d.conv,
                                           cudnnConvolutionBwdDataAlgo_t(choice.algo), ws.ptr, ws.bytes(), &zero, d.x,
                                           dx));
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
  const ConvDescriptors d(g, dtype, channels_last);
  const AlgoChoice choice = choose_algorithm(
      device, make_key(device, ConvPass::BackwardFilter, g, dtype, channels_last), d, x, nullptr, dy, dweight);
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, choice.math));
  CudaScratch<uint8_t> ws(device, choice.workspace);
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(cuda::cudnn_handle(device), &one, d.x, x, d.y, dy, d.conv,
                                             cudnnConvolutionBwdFilterAlgo_t(choice.algo), ws.ptr, ws.bytes(), &zero,
                                             d.w, dweight));
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
